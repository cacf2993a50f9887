"""The feature store: stored rows equal fresh ones, subsets are read not recomputed, and the key
changes with anything the features depend on."""

import numpy as np

from sft_tf.data import sources
from sft_tf.model import classifier
from sft_tf.model import weights as weights_lib
from sft_tf.training import feature_store, head_cache, inputs, recipe
from tests.helpers import tiny_config


def _setup(tmp_path, image_folders):
    """A tiny base saved as a backbone weights file (the store keeps pretrained bases only)."""
    config = tiny_config()
    config.data.train = f"folder:{image_folders['train']}"
    config.data.cache_dir = str(tmp_path / "cache")
    examples = sources.load_examples(config.data.train, field="data.train")
    model = recipe.build_model(config, len(examples.class_names), "", "frozen")
    config.model.weights = str(tmp_path / "base.weights.h5")
    weights_lib.save_backbone_weights(classifier.get_base(model), config.model.weights, {})
    return config, examples, model


def test_stored_rows_equal_fresh_ones_and_subsets_are_read(tmp_path, image_folders):
    config, examples, model = _setup(tmp_path, image_folders)
    fresh = head_cache.extract(
        model, inputs.make_dataset(config, examples, training=False, one_hot=False)
    )
    first = feature_store.pooled_features(config, model, examples)
    # The store computes in its own batches: on some CPUs (this AMD EPYC host) oneDNN picks
    # other kernels for another batch size, which moves the last bits (relative 5e-3 on the
    # random base's 1e-11 features). What is read back from the store is exact.
    np.testing.assert_allclose(first, fresh, rtol=1e-2, atol=1e-4 * np.abs(fresh).max())
    path = feature_store.store_path(config)
    written = path.stat().st_mtime_ns
    subset = examples.take(np.array([5, 1, 30]))
    np.testing.assert_array_equal(
        feature_store.pooled_features(config, model, subset), first[[5, 1, 30]]
    )
    assert path.stat().st_mtime_ns == written  # nothing new to compute, nothing rewritten


def test_the_key_follows_what_the_features_depend_on(tmp_path):
    config = tiny_config()
    config.model.weights = "imagenet"
    weights = tmp_path / "base.weights.h5"
    keys = {feature_store.store_key(config)}
    config.data.resize_method = "crop"
    keys.add(feature_store.store_key(config))
    config.model.image_size = 48
    keys.add(feature_store.store_key(config))
    weights.write_bytes(b"first")
    config.model.weights = str(weights)
    keys.add(feature_store.store_key(config))
    weights.write_bytes(b"second")
    keys.add(feature_store.store_key(config))
    assert len(keys) == 5
    config.name = "renamed"  # what does not change the features does not change the key
    assert feature_store.store_key(config) in keys


def test_a_damaged_store_is_recomputed(tmp_path, image_folders):
    config, examples, model = _setup(tmp_path, image_folders)
    path = feature_store.store_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a file")
    assert feature_store.pooled_features(config, model, examples).shape[0] == len(examples)


def test_a_random_base_is_never_stored(tmp_path, image_folders):
    config, examples, model = _setup(tmp_path, image_folders)
    config.model.weights = ""
    feature_store.pooled_features(config, model, examples)
    assert not (tmp_path / "cache").exists()
