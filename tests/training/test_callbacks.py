"""The run-wide epoch count on the console and in TensorBoard; the NaN guard."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf.training import callbacks


def _model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_a_resumed_epoch_counts_to_the_runs_last(capsys):
    """A resumed half epoch is its own fit (initial_epoch=2, epochs=3): it still says 3/5."""
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    _model().fit(x, y, initial_epoch=2, epochs=3, verbose=2, callbacks=[callbacks.RunProgress(5)])
    out = capsys.readouterr().out
    assert "Epoch 3/5" in out and "Epoch 3/3" not in out


def test_tensorboard_numbers_epochs_from_one(tmp_path):
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    board = callbacks.TensorBoard(log_dir=str(tmp_path))
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[board])
    steps = set()
    for path in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            if any(value.tag == "epoch_loss" for value in event.summary.value):
                steps.add(event.step)
    assert steps == {1, 2}


def test_a_nan_loss_stops_the_fit_at_its_step_with_the_hint():
    """The guard raises at the first non-finite loss, naming the step of the whole epoch."""
    x = np.array([[1.0, 1.0]] * 3 + [[np.nan, 1.0]], np.float32)
    guard = callbacks.StopOnNonFinite("phase2", "the fix", first_step=5)
    with pytest.raises(callbacks.TrainingDiverged) as raised:
        _model().fit(
            x,
            np.zeros((4, 1), np.float32),
            batch_size=1,
            shuffle=False,
            verbose=0,
            callbacks=[guard],
        )
    assert str(raised.value) == (
        "phase2: the loss became nan at epoch 1, step 9 and nothing was exported; the fix"
    )
