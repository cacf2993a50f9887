"""sft_tf/training/head_cache.py: phase 1 on cached pooled features. The features are the
model's own pooled features (one device and two replicas alike), the head trained on them is
the classifier's head, the feature batches come in the image pipeline's order, and
why_not says when features cannot be cached."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data import balance, pipeline
from sft_tf.data.examples import Examples
from sft_tf.errors import UserError
from sft_tf.model import classifier
from sft_tf.training import cache_choice, head_cache
from tests.helpers import tiny_classifier, tiny_model

N, BATCH = 20, 8  # a short last batch of 4 in evaluation


@pytest.fixture(scope="module")
def model():
    return tiny_classifier(3, seed=0)


@pytest.fixture(scope="module")
def images() -> Examples:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    return Examples(("a", "b", "c"), (np.arange(N) % 3).astype(np.int32), pixels=pixels)


def _own_pooled_features(model, pixels) -> np.ndarray:
    """The average of the base's feature map, computed from the model's parts."""
    preprocessed = model.get_layer("preprocess")(pixels)
    feature_map = classifier.get_base(model)(preprocessed, training=False)
    return np.asarray(feature_map).mean(axis=(1, 2))


def test_extract_gives_the_models_pooled_features_in_order(model, images):
    features = head_cache.extract(model, pipeline.build_dataset(images, 32, BATCH, False))
    expected = _own_pooled_features(model, images.pixels)
    assert features.dtype == np.float32 and features.shape == expected.shape == (N, 1280)
    # Graph and eager convolutions round differently: ~1e-4 on features of size ~1.
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=3e-4)
    assert features.std(axis=0).max() > 1e-2  # images really differ in feature space


@pytest.mark.slow  # a second model under MirroredStrategy and Keras's predict: ~4 s
def test_extract_under_two_replicas_gives_the_same_features(model, images):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = tiny_model(3)
    mirrored.set_weights(model.get_weights())
    dataset = pipeline.build_dataset(images, 32, BATCH, False)
    np.testing.assert_allclose(
        head_cache.extract(mirrored, dataset),
        head_cache.extract(model, dataset),
        rtol=1e-4,
        atol=1e-5,
    )


def test_the_head_on_features_is_the_classifiers_own_head(model, images):
    head = head_cache.head_of(model)
    assert head.get_layer("probabilities") is model.get_layer("probabilities")
    features = _own_pooled_features(model, images.pixels)
    np.testing.assert_allclose(
        head.predict(features, verbose=0),
        model.predict(images.pixels, verbose=0),
        rtol=1e-3,
        atol=1e-4,
    )
    kernel = model.get_layer("probabilities").kernel
    start = kernel.numpy()
    try:
        head.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy())
        head.train_on_batch(features, images.labels)
        assert np.abs(kernel.numpy() - start).max() > 1e-4  # the classifier's weights moved
    finally:
        kernel.assign(start)


def _numbered(count: int, labels) -> Examples:
    """8x8 images filled with their own index: a batch's images say which examples it holds."""
    pixels = np.repeat(np.arange(count, dtype=np.uint8), 8 * 8 * 3).reshape(count, 8, 8, 3)
    return Examples(("a", "b", "c"), np.asarray(labels, np.int32), pixels=pixels)


def _image_batches(examples, **options):
    ds = pipeline.build_dataset(examples, 8, BATCH, training=True, seed=3, **options)
    return [(b[0].numpy()[:, 0, 0, 0].astype(int), *[t.numpy() for t in b[1:]]) for b in ds]


def _feature_batches(examples, **options):
    features = np.arange(len(examples), dtype=np.float32)[:, None]
    ds = head_cache.feature_dataset(
        features, examples.labels, BATCH, training=True, seed=3, epochs=2, **options
    )
    return [(b[0].numpy()[:, 0].astype(int), *[t.numpy() for t in b[1:]]) for b in ds]


def test_training_batches_are_the_image_pipelines_batches_in_its_order():
    examples = _numbered(N, np.arange(N) % 3)
    image_batches = _image_batches(examples, until_epoch=2)
    feature_batches = _feature_batches(examples)
    assert len(feature_batches) == 2 * (N // BATCH)  # full batches only, two epochs
    for (indices, labels), (expected, expected_labels) in zip(feature_batches, image_batches):
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_array_equal(labels, expected_labels)
    assert not np.array_equal(feature_batches[0][0], feature_batches[2][0])  # reshuffled


def test_weighted_and_balanced_batches_follow_the_image_pipeline():
    labels = np.array([0] * 14 + [1] * 4 + [2] * 2)  # imbalanced
    examples = _numbered(N, labels)
    weights = balance.class_weights("balanced", examples.class_names, examples.counts(), "f")
    weighted = dict(num_classes=3, class_weights=weights)
    for options in (weighted, dict(resample="balanced")):
        image_batches = _image_batches(examples, until_epoch=2, **options)
        feature_batches = _feature_batches(examples, **options)
        assert len(feature_batches) == len(image_batches) == 4
        for got, expected in zip(feature_batches, image_batches):
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_allclose(a, b)
    x, one_hot, sample_weight = _feature_batches(examples, **weighted)[0]
    assert one_hot.shape == (BATCH, 3) and sample_weight.shape == (BATCH,)
    np.testing.assert_allclose(sample_weight, weights[labels[x]])


def test_training_batches_have_a_static_shape_and_evaluation_keeps_every_example():
    features = np.random.default_rng(0).normal(size=(N, 5)).astype(np.float32)
    labels = np.arange(N) % 3
    train = head_cache.feature_dataset(features, labels, BATCH, training=True, num_classes=3)
    x_spec, y_spec = train.element_spec
    assert x_spec.shape.as_list() == [BATCH, 5] and y_spec.shape.as_list() == [BATCH, 3]
    evaluation = list(head_cache.feature_dataset(features, labels, BATCH, training=False))
    np.testing.assert_array_equal(np.concatenate([x for x, _ in evaluation]), features)
    np.testing.assert_array_equal(np.concatenate([y for _, y in evaluation]), labels)


@pytest.mark.parametrize(
    "mode, augment, multi_worker, cache",
    [
        ("auto", [], False, True),
        ("auto", ["flip"], False, False),  # augmented images differ every epoch
        ("auto", [], True, False),  # each worker would run the base over its shard first
        ("auto", ["flip"], True, False),
        ("on", [], False, True),
        ("on", [], True, True),  # on: each worker caches its shard
        ("off", [], False, False),
        ("off", ["flip"], True, False),
    ],
)
def test_phase1_cache_decision_table(mode, augment, multi_worker, cache):
    reason = head_cache.why_not(mode, augment, multi_worker)
    assert cache_choice.decide("phase1.cache_features", mode, reason, "Uncached") is cache


def test_phase1_cache_on_with_augmentation_names_the_reason():
    """(Validation refuses this config before training; the rule itself refuses it too.)"""
    reason = head_cache.why_not("on", ["flip"], False)
    with pytest.raises(UserError, match=r"^config.phase1.cache_features='on' cannot be used: "):
        cache_choice.decide("phase1.cache_features", "on", reason, "Uncached")
