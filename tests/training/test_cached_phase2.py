"""sft_tf/training/cached_phase2.py: config.phase2.cache_frozen applied to a run. `plan`
decides whether phase 2 trains on cached boundary activations (the decision table, with the
reason given or the refusal); `inputs` turns config.data into the cached training stream and
validation batches, which are the image pipeline's batches pushed through the frozen part:
same order, same flips, same labels and sample weights, so training on them is the same
training (checked on one epoch of the tiny model)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data.examples import Examples
from sft_tf.errors import UserError
from sft_tf.model import backbones, classifier, unfreeze
from sft_tf.training import cached_phase2, inputs
from tests.helpers import tiny_classifier, tiny_config

BATCH = 8


@pytest.fixture(scope="module")
def opened_model():
    """The calibrated tiny classifier with its top 2 blocks open, as phase 2 opens them."""
    model = tiny_classifier(3, seed=0)
    model.get_layer("dropout").rate = 0.0  # the two fits below draw different dropout masks
    opened = unfreeze.unfreeze_top_blocks(classifier.get_base(model), "MobileNetV2", 2)
    return model, opened


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(2)
    labels = np.array([0] * 12 + [1] * 8 + [2] * 4, np.int32)  # imbalanced: weights differ
    pixels = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    train = Examples(("a", "b", "c"), labels, pixels=pixels, origin="train")
    val_pixels = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    validation = Examples(("a", "b", "c"), np.arange(10, dtype=np.int32) % 3, pixels=val_pixels)
    return train, validation


def _config(**changes):
    config = tiny_config(data__global_batch_size=BATCH, seed=4, **changes)
    config.data.cache = "memory"
    return config


def _all_blocks(model) -> list[str]:
    structure = backbones.block_structure(classifier.get_base(model), "MobileNetV2")
    return unfreeze.opened_blocks(structure, -1)


@pytest.mark.parametrize(
    "augment, mode, batchnorm",
    [
        ("", "auto", "frozen"),
        ("flip", "auto", "frozen"),  # both outcomes of a flip are cached
        ("flip", "on", "frozen"),
        # BatchNorm below the opened blocks is frozen, so it runs in inference mode anyway.
        ("", "auto", "train"),
    ],
)
def test_plan_cuts_at_the_first_opened_block_when_the_cache_is_exact(
    opened_model, augment, mode, batchnorm
):
    model, opened = opened_model
    config = _config(data__augment=augment, phase2__cache_frozen=mode)
    config.phase2.batchnorm = batchnorm
    cut = cached_phase2.plan(config, model, tf.distribute.get_strategy(), opened)
    assert cut.boundary == "block_15_expand"
    assert cut.trainee.get_layer("probabilities") is model.get_layer("probabilities")
    assert tuple(cut.lower.input.shape) == (None, 32, 32, 3)


@pytest.mark.parametrize(
    "augment, mode, whole_base, reason",
    [
        ("", "off", False, None),
        (
            "flip,rotate",
            "auto",
            False,
            "data.augment has rotate: only flip's outcomes can be cached (two per image); "
            "others change every epoch",
        ),
        (
            "",
            "auto",
            True,
            "the whole base is open (phase2.unfreeze_blocks=-1): nothing below is frozen",
        ),
    ],
)
def test_plan_trains_the_whole_model_and_says_why(
    opened_model, capsys, augment, mode, whole_base, reason
):
    model, opened = opened_model
    config = _config(data__augment=augment, phase2__cache_frozen=mode)
    blocks = _all_blocks(model) if whole_base else opened
    assert cached_phase2.plan(config, model, tf.distribute.get_strategy(), blocks) is None
    out = capsys.readouterr().out
    if reason is None:  # off: nothing to explain
        assert out == ""
    else:
        assert out == (
            f"Phase 2 runs the whole base every step (phase2.cache_frozen=auto): {reason}\n"
        )


@pytest.mark.parametrize(
    "augment, whole_base, reason",
    [
        ("mixup", False, "data.augment has mixup: only flip's outcomes can be cached"),
        ("", True, "the whole base is open (phase2.unfreeze_blocks=-1)"),
    ],
)
def test_plan_refuses_on_where_the_cache_would_change_the_training(
    opened_model, augment, whole_base, reason
):
    model, opened = opened_model
    config = _config(data__augment=augment, phase2__cache_frozen="on")
    blocks = _all_blocks(model) if whole_base else opened
    with pytest.raises(UserError) as raised:
        cached_phase2.plan(config, model, tf.distribute.get_strategy(), blocks)
    message = str(raised.value)
    assert message.startswith(f"config.phase2.cache_frozen='on' cannot be used: {reason}")
    assert message.endswith("; set it to 'auto' or 'off'")


def _cut(model, opened, config):
    return cached_phase2.plan(config, model, tf.distribute.get_strategy(), opened)


def test_cached_batches_are_the_image_batches_through_the_frozen_part(opened_model, splits):
    """With flip and class weights: each cached batch is the image pipeline's batch (its
    flips included) through `lower`, with its labels and sample weights; validation too."""
    model, opened = opened_model
    train, validation = splits
    config = _config(data__augment="flip", data__class_weighting="balanced")
    cut = _cut(model, opened, config)
    strategy = tf.distribute.get_strategy()
    pipelines = inputs.build_pipelines(config, strategy, train, validation, None)
    image_stream = pipelines.train_input((0, 0), 2)
    decoded = pipelines.decoded_pixels(train)  # what a run hands over: read, not decoded again
    stream, val = cached_phase2.inputs(config, cut, train, validation, decoded, strategy)
    cached = list(stream((0, 0), 2))
    images = list(image_stream)
    assert len(cached) == len(images) == 2 * pipelines.steps == 6
    for (_, y, w), (_, y_images, w_images) in zip(cached, images):
        np.testing.assert_array_equal(y.numpy(), y_images.numpy())
        np.testing.assert_array_equal(w.numpy(), w_images.numpy())
    assert len({float(x) for x in cached[0][2].numpy()}) > 1  # the classes' weights differ
    activations = np.concatenate([np.asarray(a) for a, *_ in cached])
    pixels = np.concatenate([np.asarray(x) for x, *_ in images])
    np.testing.assert_allclose(activations, _lower(cut, pixels), rtol=1e-4, atol=1e-4)
    # The other variant of every image differs, so a wrongly picked variant would show.
    other = _lower(cut, pixels[:, :, ::-1])
    same_as_other = np.abs(activations - other).reshape(len(pixels), -1).max(1) < 1e-4
    assert not same_as_other.any()
    val_batches = list(val)
    expected = list(pipelines.val_ds)
    assert [len(y) for _, y in val_batches] == [len(y) for _, y in expected] == [8, 2]
    for (_, y), (_, y_images) in zip(val_batches, expected):
        np.testing.assert_array_equal(y.numpy(), y_images.numpy())
    np.testing.assert_allclose(
        np.concatenate([np.asarray(a) for a, _ in val_batches]),
        _lower(cut, validation.pixels),
        rtol=1e-4,
        atol=1e-4,
    )


def _lower(cut, pixels: np.ndarray) -> np.ndarray:
    """The frozen part's activations of `pixels`, computed on their own."""
    return cut.lower.predict(pixels, batch_size=len(pixels), verbose=0)


@pytest.mark.slow  # two fits of the tiny model: ~6-10 s; tests/training/test_frozen_cache.py
# checks the same at the storage level by default
def test_an_epoch_on_cached_activations_ends_at_the_weights_of_an_epoch_on_images(
    opened_model, splits
):
    model, opened = opened_model
    train, _ = splits
    config = _config(data__augment="flip")
    strategy = tf.distribute.get_strategy()
    start = [v.numpy() for v in model.trainable_variables]
    kernel = classifier.get_base(model).get_layer("block_16_project").kernel
    at = [v is kernel for v in model.trainable_variables].index(True)

    def fit(trainee, batches):
        for variable, value in zip(model.trainable_variables, start):
            variable.assign(value)
        trainee.compile(keras.optimizers.SGD(0.01), keras.losses.CategoricalCrossentropy())
        trainee.fit(batches, epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)
        return [v.numpy() for v in model.trainable_variables]

    on_images = fit(model, inputs.train_input(config, strategy, train)[0]((0, 0), 1))
    moved = np.abs(on_images[at] - start[at]).max()
    cut = _cut(model, opened, config)
    stream, _ = cached_phase2.inputs(config, cut, train, None, None, strategy)
    on_cache = fit(cut.trainee, stream((0, 0), 1))
    assert moved > 1e-4  # the opened blocks really trained
    # The same updates up to float rounding (graph differences between the two models).
    for a, b, s, variable in zip(on_cache, on_images, start, model.trainable_variables):
        update = np.abs(b - s).max()
        assert np.abs(a - b).max() <= 1e-3 * update + 1e-7, variable.path
