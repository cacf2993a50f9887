"""load_trained: a finished run's weights file; an interrupted run's newest checkpoint."""

import keras
import numpy as np
import pytest

from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.training import recipe
from sft_tf.training.checkpoints import RunCheckpoints
from sft_tf.training.layout import CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE
from sft_tf.training.state import RunState
from sft_tf.training.trained import load_trained
from tests.helpers import tiny_config

CLASSES = ["cat", "dog", "fox"]


def _model(config, fill: float) -> keras.Model:
    """The workdir's classifier with its head kernel set to `fill`, to tell weights apart."""
    model = recipe.build_model(config, 3, weights="", batchnorm=config.phase2.batchnorm)
    model.get_layer("probabilities").kernel.assign(
        np.full(model.get_layer("probabilities").kernel.shape, fill, np.float32)
    )
    return model


def _head(model) -> float:
    kernel = model.get_layer("probabilities").kernel.numpy()
    assert np.all(kernel == kernel.flat[0])
    return float(kernel.flat[0])


@pytest.fixture
def workdir(tmp_path):
    """A run killed in phase 2 (checkpoint: head 1.0) that an earlier version also left a
    weights file in (head 2.0, its last epoch end)."""
    config = tiny_config()
    config_files.save(config, tmp_path / CONFIG_FILE)
    (tmp_path / LABELS_FILE).write_text("\n".join(CLASSES) + "\n")
    model = _model(config, 1.0)
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy")
    saver = RunCheckpoints(tmp_path, model)
    saver.track(model)
    saver.save(RunState(phase="phase2", checkpoint_phase="phase2", epochs_done=3))
    _model(config, 2.0).save_weights(tmp_path / WEIGHTS_FILE)
    return tmp_path


def test_an_interrupted_run_gives_its_newest_checkpoint(workdir, capsys):
    config, model, class_names = load_trained(workdir)
    assert class_names == CLASSES and config.name == "tiny"
    assert _head(model) == 1.0  # the checkpoint, not the older weights file
    out = capsys.readouterr().out
    assert "Unfinished run: the weights of checkpoint ckpt-1, phase2 after 3 finished" in out


def test_a_finished_run_gives_its_weights_file(workdir):
    RunState(phase="trained", epochs_done=4, checkpoint="ckpt-1", complete=True).save(workdir)
    assert _head(load_trained(workdir)[1]) == 2.0


def test_unreadable_checkpoints_fall_back_to_an_earlier_versions_weights_file(workdir, capsys):
    for data in (workdir / "checkpoints").glob("*.data-*"):
        data.write_bytes(b"x")
    assert _head(load_trained(workdir)[1]) == 2.0
    assert f"Using {workdir / WEIGHTS_FILE} (an earlier version's" in capsys.readouterr().out
    (workdir / WEIGHTS_FILE).unlink()
    with pytest.raises(UserError, match="no weights of the run in .* can be read: cannot resume"):
        load_trained(workdir)


def test_a_run_without_weights_is_refused(workdir):
    for path in (workdir / "checkpoints").iterdir():
        path.unlink()
    (workdir / "state.json").unlink()
    (workdir / WEIGHTS_FILE).unlink()
    with pytest.raises(UserError, match=r"model.weights.h5 not found; has `sft-tf train` run"):
        load_trained(workdir)
    (workdir / LABELS_FILE).unlink()
    with pytest.raises(UserError, match=r"labels.txt not found"):
        load_trained(workdir)
