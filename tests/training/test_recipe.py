"""sft_tf/training/recipe.py: the Keras pieces a phase's config asks for. The classifier of
config.model, the optimizer of the phase section with its warm-up + cosine schedule (values
at given steps), the loss and metrics, per-block learning rates and the L2-SP term of
config.phase2, early stopping, and the learning-rate scaling of config.runtime."""

import math

import keras
import numpy as np
import pytest

from sft_tf.model import backbones, classifier, losses, optim, unfreeze
from sft_tf.training import recipe
from tests.helpers import tiny_config


def _dense(num_classes: int = 3, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(num_classes, activation="softmax")]
    )


def _evaluated(model: keras.Model, num_classes: int) -> set[str]:
    """What evaluating the compiled model reports."""
    x = np.zeros((2, 4), "float32")
    y = keras.utils.to_categorical([0, 1], num_classes)
    return set(model.evaluate(x, y, verbose=0, return_dict=True))


def _rate_at(model: keras.Model, step: int) -> float:
    model.optimizer.iterations.assign(step)
    return float(model.optimizer.learning_rate)


@pytest.fixture(scope="module")
def opened():
    """The tiny classifier (random weights) with its top 2 blocks open, as phase 2 opens them."""
    model = recipe.build_model(tiny_config(), 3, weights="", batchnorm="frozen")
    base = classifier.get_base(model)
    names = unfreeze.unfreeze_top_blocks(base, "MobileNetV2", 2)
    return model, base, names


def test_build_model_is_the_classifier_config_model_asks_for():
    config = tiny_config(model__pooling="max", model__dropout=0.4, model__head_init="zeros")
    config.data.multi_label = True
    model = recipe.build_model(config, 4, weights="", batchnorm="frozen")
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 32, 32, 3)
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalMaxPooling2D)
    assert model.get_layer("dropout").rate == 0.4
    head = model.get_layer("probabilities")
    assert head.units == 4 and head.activation is keras.activations.sigmoid
    assert not np.any(head.kernel.numpy())
    base = classifier.get_base(model)
    assert not base.trainable
    assert base.get_layer("Conv1").filters == 16  # alpha 0.35: make_divisible(32 * 0.35, 8)
    # multi_label given wins over config.data.multi_label (source pretraining is single-label).
    single = recipe.build_model(config, 4, weights="", batchnorm="frozen", multi_label=False)
    assert single.get_layer("probabilities").activation is keras.activations.softmax


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_zero():
    model = _dense()
    # 3 epochs of 4 steps, 1 epoch of warm-up: 0 -> 0.1 over steps 0..4, cosine over 4..12.
    recipe.compile_phase(model, 0.1, warmup_epochs=1, epochs=3, steps=4)
    expected = {
        0: 0.0,
        2: 0.05,
        4: 0.1,
        6: 0.1 * 0.5 * (1 + math.cos(math.pi * 2 / 8)),
        8: 0.05,
        12: 0.0,
    }
    for step, rate in expected.items():
        assert _rate_at(model, step) == pytest.approx(rate, abs=1e-7), step


def test_no_warm_up_starts_at_the_peak_and_a_long_warm_up_is_cut_to_the_phase():
    model = _dense()
    recipe.compile_phase(model, 0.1, warmup_epochs=0, epochs=2, steps=5)
    assert _rate_at(model, 0) == pytest.approx(0.1)
    assert _rate_at(model, 5) == pytest.approx(0.05)
    recipe.compile_phase(model, 0.1, warmup_epochs=10, epochs=1, steps=4)  # 40 > 4 steps
    assert _rate_at(model, 0) == 0.0
    assert _rate_at(model, 3) == pytest.approx(0.1)  # the peak at the last step but one
    assert _rate_at(model, 4) == pytest.approx(0.0, abs=1e-7)


def test_the_phase_section_picks_optimizer_loss_and_metrics():
    phase = tiny_config().phase2
    phase.optimizer, phase.momentum, phase.nesterov = "sgd", 0.5, True
    phase.weight_decay, phase.clipnorm, phase.label_smoothing = 1e-3, 2.0, 0.1
    model = _dense(num_classes=6)
    recipe.compile_phase(model, 0.01, 0, 1, 10, phase=phase)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert (optimizer.momentum, optimizer.nesterov) == (0.5, True)
    assert optimizer.weight_decay == pytest.approx(1e-3) and optimizer.clipnorm == 2.0
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    # top-5 only with more than 5 classes
    assert _evaluated(model, 6) == {"loss", "accuracy", "top5_accuracy"}

    phase.optimizer = "adamw"
    recipe.compile_phase(model, 0.01, 0, 1, 10, phase=phase)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.weight_decay == pytest.approx(1e-3)

    three = _dense(num_classes=3)
    recipe.compile_phase(three, 0.01, 0, 1, 10)  # no section: plain Adam, no smoothing
    assert isinstance(three.optimizer, keras.optimizers.Adam)
    assert not isinstance(three.optimizer, keras.optimizers.AdamW)
    assert three.optimizer.clipnorm is None
    assert three.loss.get_config()["label_smoothing"] == 0.0
    assert _evaluated(three, 3) == {"loss", "accuracy"}


def test_multi_label_trains_binary_cross_entropy_with_positive_weights():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    recipe.compile_phase(model, 0.01, 0, 1, 10, multi_label=True, positive_weights=[1, 2, 3])
    assert isinstance(model.loss, losses.WeightedBinaryCrossentropy)
    assert model.loss.positive_weights == [1.0, 2.0, 3.0]
    assert _evaluated(model, 3) == {"loss", "binary_accuracy"}
    recipe.compile_phase(model, 0.01, 0, 1, 10, multi_label=True)
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)


def test_compile_options_reach_the_model():
    model = _dense()
    options = {"jit_compile": False, "steps_per_execution": 3}
    recipe.compile_phase(model, 0.01, 0, 1, 10, compile_options=options)
    assert model.jit_compile is False and model.steps_per_execution == 3


def test_rate_scales_scale_each_variables_step():
    """One SGD step at the peak rate: the scaled kernel moves half as far, the bias as far."""
    phase = tiny_config().phase1
    phase.optimizer, phase.momentum = "sgd", 0.0
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 3, 3)
    moved = []
    for scale in (1.0, 0.5):
        model = _dense(seed=0)
        start = [w.numpy() for w in model.weights]
        kernel = model.layers[-1].kernel
        recipe.compile_phase(model, 0.1, 0, 1, 100, phase=phase, rate_scales=[(kernel, scale)])
        model.train_on_batch(x, y)
        moved.append([w.numpy() - s for w, s in zip(model.weights, start)])
    (kernel_1, bias_1), (kernel_half, bias_half) = moved
    assert np.abs(kernel_1).max() > 1e-3
    np.testing.assert_allclose(kernel_half, 0.5 * kernel_1, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bias_half, bias_1, rtol=1e-6)


def test_layer_decay_gives_the_top_block_1_and_each_block_below_decay_more(opened):
    _model, base, names = opened
    config = tiny_config(phase2__layer_decay=0.5)
    scales = recipe.phase2_recipe(config, base, names)
    blocks = dict(backbones.block_structure(base, "MobileNetV2").blocks)
    expected = {}
    for factor, block in ((1.0, "block_16"), (0.5, "block_15")):
        for layer in blocks[block]:
            expected.update({id(v): factor for v in base.get_layer(layer).trainable_weights})
    assert names == ["block_15", "block_16"]
    assert {id(v): s for v, s in scales} == expected
    assert recipe.phase2_recipe(tiny_config(), base, names) == []  # layer_decay 1.0


def test_l2sp_pulls_the_opened_weights_toward_their_start(opened, capsys):
    model, base, names = opened
    recipe.phase2_recipe(tiny_config(phase2__l2sp=0.01), base, names)
    try:
        penalised = [w for w in model.weights if w.regularizer is not None]
        opened_layers = [layer for layer in base.layers if layer.trainable]
        assert {id(w) for w in penalised} == {
            id(w)
            for layer in opened_layers
            if not isinstance(layer, keras.layers.BatchNormalization)
            for w in layer.trainable_weights
        }
        assert "L2-SP 0.01 toward the starting weights on " in capsys.readouterr().out
        assert float(sum(model.losses)) == pytest.approx(0.0, abs=1e-9)
        kernel = base.get_layer("block_16_project").kernel
        start = kernel.numpy()
        delta = np.random.default_rng(0).normal(0, 0.1, start.shape).astype("float32")
        kernel.assign(start + delta)
        assert float(sum(model.losses)) == pytest.approx(0.01 * float((delta**2).sum()), 1e-4)
        kernel.assign(start)
    finally:
        optim.apply_l2sp([w for w in model.weights if w.regularizer is not None], 0.0)
    assert not model.losses


def test_early_stopping_needs_patience_and_a_validation_set():
    phase = tiny_config().phase2
    assert recipe.early_stopping(phase, object()) == []  # patience 0
    phase.early_stopping_patience = 2
    assert recipe.early_stopping(phase, None) == []
    (callback,) = recipe.early_stopping(phase, object())
    assert isinstance(callback, keras.callbacks.EarlyStopping)
    assert (callback.monitor, callback.patience, callback.restore_best_weights) == (
        "val_loss",
        2,
        True,
    )


@pytest.mark.parametrize("scaling, batch, expected", [("none", 64, 1e-3), ("linear", 64, 2.5e-4)])
def test_phase_learning_rate_follows_runtime_lr_scaling(scaling, batch, expected):
    config = tiny_config(runtime__lr_scaling=scaling, data__global_batch_size=batch)
    assert recipe.phase_learning_rate(config, 1e-3) == pytest.approx(expected)
