"""The input-pipeline options end to end: bad files in a real run, hold-outs, feature cache."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf.commands import train
from sft_tf.config import validation
from sft_tf.data import examples as examples_lib
from sft_tf.data import pipeline
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources as sources_lib
from sft_tf.errors import UserError
from sft_tf.training import head_cache
from tests import helpers
from tests.helpers import REPO, load_config, tiny_classifier


def tiny_config(tmp_path, train_spec):
    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = train_spec
    config.export.dir = ""
    config.data.cache_dir = str(tmp_path / "cache")
    return config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("data.resize_method", "squash", "config.data.resize_method='squash' must be one of"),
        ("data.on_bad_image", "ignore", "config.data.on_bad_image='ignore' must be one of"),
        ("data.cache", "ram", "config.data.cache='ram' must be one of auto, memory, disk, off"),
        ("data.cache_memory_mb", -1, "config.data.cache_memory_mb=-1 must be >= 0"),
        ("data.test", "split:0.2", "config.data.test='split:0.2': split:FRACTION is only for"),
        ("data.validation", "split:2", "config.data.validation='split:2'.*between 0 and 1"),
        ("phase1.cache_features", "yes", "config.phase1.cache_features='yes' must be one of"),
        ("data.augment", "flip", "config.phase1.cache_features='on' needs config.data.augment=''"),
    ],
)
def test_validate_names_field_value_and_fix(tmp_path, field, value, message):
    config = tiny_config(tmp_path, "folder:/data/train")
    if field == "data.augment":
        config.phase1.cache_features = "on"
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(UserError, match=message):
        validation.validate(config, "train")


def test_defaults_validate(tmp_path):
    config = tiny_config(tmp_path, "tfds:tf_flowers:train[:80%]")
    config.data.validation = "split:0.1"
    validation.validate(config, "train")


@pytest.mark.slow
def test_run_on_a_messy_folder_skips_and_reports_exactly_the_bad_files(tmp_path, capsys):
    planted = helpers.write_messy_folder(tmp_path / "train", per_class=12)
    config = tiny_config(tmp_path, f"folder:{tmp_path / 'train'}")
    config.data.validation = "split:0.25"
    config.data.global_batch_size = 4
    config.phase2.epochs = 1
    validation.validate(config, "train")

    metrics = train.run(config, tmp_path / "run")

    out = capsys.readouterr().out
    assert "Skipping 3 image(s) that cannot be decoded:" in out
    for path, reason in planted.items():
        assert f"train: {path}: " in out and reason in out
    assert out.count("  train: ") == 3  # exactly the planted ones, no odd-but-valid file
    # 36 good + 7 odd formats = 43 decodable; a quarter of each class held out for validation.
    listed = sources_lib.load_examples(config.data.train)
    rest, held = examples_lib.holdout(
        scan_lib.drop_bad(listed, scan_lib.scan_images(listed)), 0.25, 0
    )
    assert metrics["train_examples"] == len(rest) == 43 - len(held)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["val_accuracy"]) == 2
    assert "Phase 1 on cached features" in out  # tiny.py augments nothing, so auto caches


def test_run_with_on_bad_image_fail_stops_before_the_workdir(tmp_path):
    planted = helpers.write_messy_folder(tmp_path / "train", per_class=6)
    config = tiny_config(tmp_path, f"folder:{tmp_path / 'train'}")
    config.data.on_bad_image = "fail"
    validation.validate(config, "train")
    with pytest.raises(UserError, match=r"3 image\(s\) cannot be decoded") as error:
        train.run(config, tmp_path / "run")
    for path in planted:
        assert path in str(error.value)
    assert not (tmp_path / "run").exists()


def test_run_stops_on_train_test_leakage(tmp_path):
    helpers.write_messy_folder(tmp_path / "train", per_class=6)
    helpers.write_messy_folder(tmp_path / "test", per_class=2)  # same first images
    config = tiny_config(tmp_path, f"folder:{tmp_path / 'train'}")
    config.data.test = f"folder:{tmp_path / 'test'}"
    with pytest.raises(UserError, match=r"test image\(s\) also in train"):
        train.run(config, tmp_path / "run")


@pytest.mark.slow
def test_feature_cache_head_matches_running_the_frozen_base(fashion_dir):
    """Phase 1 on cached features reaches the weights phase 1 on images reaches."""
    examples = examples_lib.select_classes(
        sources_lib.load_examples(f"fashion_mnist:train:{fashion_dir}"), ["0", "1", "2"], "classes"
    )
    examples = examples.take(np.arange(60))
    batch, epochs, seed = 8, 3, 0
    models = []
    for _ in range(2):
        model = tiny_classifier(num_classes=3)
        # Dropout draws different random masks in the two graphs; turn it off to compare.
        model.get_layer("dropout").rate = 0.0
        models.append(model)
    on_images, on_features = models
    on_features.set_weights(on_images.get_weights())
    initial = on_images.get_layer("probabilities").kernel.numpy()

    def compile_(m, steps_per_execution=1):
        m.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(),
            steps_per_execution=steps_per_execution,
        )

    keras.utils.set_random_seed(seed)
    compile_(on_images)
    images = pipeline.build_dataset(
        examples, 32, batch, training=True, seed=seed, until_epoch=epochs
    )
    steps = len(examples) // batch
    on_images.fit(images, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)

    keras.utils.set_random_seed(seed)
    head = head_cache.head_of(on_features)
    compile_(head, steps_per_execution=len(examples) // batch)  # as train.py compiles it
    pooled = head_cache.extract(on_features, pipeline.build_dataset(examples, 32, batch, False))
    assert pooled.shape == (60, on_features.get_layer("pool").output.shape[-1])
    cached = head_cache.feature_dataset(
        pooled, examples.labels, batch, training=True, seed=seed, epochs=epochs
    )
    head.fit(cached, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)

    trained = on_images.get_layer("probabilities").kernel.numpy()
    assert np.abs(trained - initial).max() > 1e-2  # the head really moved
    # atol: float rounding only (features computed in other batches; on an AMD EPYC host one
    # of 3,840 weights differed by 2e-5), far below the 1e-2 the head moved.
    np.testing.assert_allclose(
        on_features.get_layer("probabilities").kernel.numpy(), trained, atol=1e-4
    )
    np.testing.assert_allclose(
        on_features.get_layer("probabilities").bias.numpy(),
        on_images.get_layer("probabilities").bias.numpy(),
        atol=1e-5,
    )
    # The base's weights were never touched by either.
    for a, b in zip(on_images.weights, on_features.weights):
        if "probabilities" not in a.path:
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow  # two whole runs; tests/data/test_sources.py reads both sources by default
def test_tfds_and_tfrecord_sources_train(tmp_path):
    import tensorflow_datasets as tfds

    from tests.helpers import write_records

    records = tmp_path / "records"
    records.mkdir()
    rng = np.random.default_rng(0)
    items = []
    for i in range(24):
        colour = (200, 40, 40) if i % 2 else (40, 40, 200)
        pixels = np.clip(np.asarray(colour) + rng.normal(0, 20, (20, 20, 3)), 0, 255)
        items.append((tf.io.encode_jpeg(pixels.astype(np.uint8)).numpy(), i % 2, "ab"[i % 2]))
    write_records(records / "train-0", items[:12])
    write_records(records / "train-1", items[12:])
    config = tiny_config(tmp_path, f"tfrecord:{records}/train-*")
    config.data.validation = "split:0.25"
    config.phase2.epochs = 0
    metrics = train.run(config, tmp_path / "run_records")
    assert metrics["classes"] == ["a", "b"] and metrics["train_examples"] == 18

    with tfds.testing.mock_data(num_examples=20):
        config = tiny_config(tmp_path, "tfds:tf_flowers:train[:80%]")
        config.data.tfds_data_dir = str(tmp_path / "tfds")
        # TFDS mock data ignores slicing: train[80%:] would be the same 20 images, which the
        # leakage check rightly refuses as a test set. Hold out from train instead.
        config.data.validation = "split:0.25"
        config.phase2.epochs = 0
        metrics = train.run(config, tmp_path / "run_tfds")
    assert metrics["classes"][0] == "dandelion" and metrics["train_examples"] < 20
    history = json.loads((tmp_path / "run_tfds" / "history.json").read_text())
    assert len(history["val_accuracy"]) == 1
