"""Random-resized crop, MixUp/CutMix, class weighting and balanced resampling, on real files."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf import augment, config_lib, data, evaluate, train
from sft_tf import model as model_lib
from sft_tf.errors import UserError
from tests.conftest import REPO, write_image
from tests.test_config_lib import _load


def _imbalanced_folder(root: Path, counts: dict[str, int], seed: int) -> Path:
    """Flat-colour images whose colours overlap between the classes (a per-image jitter)."""
    rng = np.random.default_rng(seed)
    colours = {"common": (170, 90, 90), "rare": (110, 150, 90)}
    for name, n in counts.items():
        for i in range(n):
            colour = np.array(colours[name]) + rng.normal(0, 30, 3)
            pixels = np.clip(colour + rng.normal(0, 4, (24, 24, 3)), 0, 255).astype(np.uint8)
            write_image(root / name / f"{i:03d}.png", pixels)
    return root


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> dict[str, Path]:
    """A 1:20 imbalanced training folder (200 vs 10) and a balanced test folder."""
    base = tmp_path_factory.mktemp("imbalanced")
    return {
        "train": _imbalanced_folder(base / "train", {"common": 200, "rare": 10}, seed=0),
        "test": _imbalanced_folder(base / "test", {"common": 60, "rare": 60}, seed=1),
    }


def _colour_model() -> keras.Model:
    """Mean colour -> softmax: a model whose only evidence is the overlapping colour."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(keras.ops.cast(inputs, "float32"))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), keras.losses.CategoricalCrossentropy())
    return model


def _minority_recall(train_ds, test: data.Examples, steps: int) -> float:
    model = _colour_model()
    model.fit(train_ds, epochs=15, steps_per_epoch=steps, shuffle=False, verbose=0)
    predicted = model.predict(data.build_dataset(test, 16, 32, False), verbose=0).argmax(-1)
    rare = test.class_names.index("rare")
    return float(np.mean(predicted[test.labels == rare] == rare))


def test_balanced_weighting_and_resampling_raise_minority_recall(imbalanced):
    train_ex = data.load_examples(f"folder:{imbalanced['train']}")
    test_ex = data.load_examples(f"folder:{imbalanced['test']}")
    assert list(train_ex.counts()) == [200, 10]
    weights = augment.class_weights("balanced", train_ex.class_names, train_ex.counts())
    np.testing.assert_allclose(weights, [210 / (2 * 200), 210 / (2 * 10)], rtol=1e-6)
    steps = len(train_ex) // 16

    def pipeline(**kw):
        return data.build_dataset(
            train_ex, 16, 16, True, seed=0, num_classes=2, until_epoch=15, **kw
        )

    plain = _minority_recall(pipeline(), test_ex, steps)
    weighted = _minority_recall(pipeline(class_weights=weights), test_ex, steps)
    resampled = _minority_recall(pipeline(resample="balanced"), test_ex, steps)
    assert weighted > plain + 0.2, (plain, weighted)
    assert resampled > plain + 0.2, (plain, resampled)


def test_class_weights_ride_in_the_batches(imbalanced):
    examples = data.load_examples(f"folder:{imbalanced['train']}")
    weights = augment.class_weights("rare:5", examples.class_names, examples.counts())
    np.testing.assert_array_equal(weights, [1.0, 5.0])
    images, labels, sample_weight = next(
        iter(data.build_dataset(examples, 16, 64, True, num_classes=2, class_weights=weights))
    )
    assert images.dtype == tf.uint8 and labels.shape == (64, 2)
    np.testing.assert_array_equal(sample_weight, weights[labels.numpy().argmax(-1)])
    # Evaluation batches carry no weights.
    assert len(next(iter(data.build_dataset(examples, 16, 8, False, num_classes=2)))) == 2


def test_resampling_draws_classes_equally(imbalanced):
    examples = data.load_examples(f"folder:{imbalanced['train']}")
    ds = data.build_dataset(
        examples, 16, 30, True, seed=0, num_classes=2, resample="balanced", until_epoch=3
    )
    labels = np.concatenate([y.numpy().argmax(-1) for _, y in ds])  # 3 epochs of 7 batches
    assert len(labels) == 3 * 7 * 30
    assert abs(np.mean(labels == 1) - 0.5) < 0.06
    # Every image of the rare class comes round, not a few of them over and over.
    assert len(np.unique(labels)) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("rare:x", "is not NAME:WEIGHT"),
        ("rare:-1", "is not NAME:WEIGHT"),
        ("rare", "is not NAME:WEIGHT"),
        ("wolf:2", "no class 'wolf'"),
    ],
)
def test_class_weighting_errors_name_the_field(text, message):
    with pytest.raises(UserError, match=message) as error:
        augment.class_weights(text, ("common", "rare"), np.array([5, 1]), "config.data.x")
    assert "config.data.x=" in str(error.value)


def test_random_resized_crop_differs_per_image():
    # Channel 0 rises left to right, channel 1 top to bottom: every box looks different.
    rows, columns = np.mgrid[0:32, 0:32].astype(np.float32) * 8
    image = np.stack([columns, rows, rows + columns], axis=-1)
    batch = tf.constant(np.stack([image] * 8))
    seeds = augment.BatchSeeds(1)
    # Batch 1's draws: batch 0 happens to draw one box of ~100% of the area, centred (a
    # legitimate draw that leaves its image as it was).
    seeds.start(1)
    cropped = augment.random_resized_crop(batch, seeds).numpy()
    assert cropped.shape == batch.shape
    # Each image got its own box: no two crops are the same, and none is the whole image.
    flat = cropped.reshape(8, -1)
    assert len({tuple(np.round(row, 3)) for row in flat}) == 8
    assert all(np.abs(row - image.ravel()).max() > 1 for row in flat)


@pytest.mark.parametrize("names", [["mixup"], ["cutmix"], ["mixup", "cutmix"]])
def test_mixing_blends_images_and_labels(image_folders, names):
    examples = data.load_examples(f"folder:{image_folders['train']}")
    ds = data.build_dataset(examples, 32, 16, True, seed=0, augment=["flip", *names], num_classes=3)
    images, labels = next(iter(ds))
    labels = labels.numpy()
    assert images.dtype == tf.uint8 and labels.shape == (16, 3)
    np.testing.assert_allclose(labels.sum(-1), 1.0, atol=1e-5)
    # Some examples now carry two classes.
    assert (labels.max(-1) < 0.999).any()


def test_mixing_without_one_hot_labels_is_refused(image_folders):
    examples = data.load_examples(f"folder:{image_folders['train']}")
    with pytest.raises(ValueError, match="one-hot"):
        data.build_dataset(examples, 32, 16, True, augment=["mixup"])


def test_mixed_examples_weigh_by_their_label_mixture():
    weights = np.array([1.0, 3.0], np.float32)
    labels = tf.constant([0, 1, 0, 1])

    def swap_halves(images, one_hot):
        return images, 0.25 * one_hot + 0.75 * tf.reverse(one_hot, [0])

    _, soft, sample_weight = augment.finish_batch(
        tf.zeros([4, 2, 2, 3], tf.uint8), labels, 2, weights, swap_halves
    )
    np.testing.assert_allclose(sample_weight, soft.numpy() @ weights)
    np.testing.assert_allclose(sample_weight, [2.5, 1.5, 2.5, 1.5])


@pytest.mark.slow
def test_train_with_every_new_option(tmp_path, image_folders, capsys):
    """The real trainer with crop + mixup + cutmix, balanced weights, calibration, export."""
    config = _load(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    config.data.validation = "split:0.25"
    config.data.test = f"folder:{image_folders['test']}"
    config.data.augment = "crop,flip,mixup,cutmix"
    config.data.class_weighting = "balanced"
    config.export.calibrate = True
    config.export.dir = str(tmp_path / "saved_models")
    config_lib.validate(config, "train")
    metrics = train.run(config, tmp_path / "run")
    out = capsys.readouterr().out
    assert "Class weights (balanced): cat" in out
    calibration = metrics["calibration"]
    assert 0.05 <= calibration["temperature"] <= 20
    assert calibration["validation_nll_after"] <= calibration["validation_nll_before"] + 1e-4
    manifest = train.export.read_manifest(metrics["export"])
    assert manifest["temperature"] == calibration["temperature"]


def test_resample_and_class_weighting_are_exclusive(image_folders):
    config = _load(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    config.data.resample = "balanced"
    config.data.class_weighting = "balanced"
    with pytest.raises(UserError, match="set one of them to 'none'"):
        config_lib.validate(config, "train")


def test_fit_temperature_recovers_an_overconfident_models_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    true = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in true])
    # The model's probabilities are 3x too sharp: the fitted temperature undoes that.
    overconfident = evaluate.apply_temperature(true, 1 / 3)
    temperature = evaluate.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    calibrated = evaluate.apply_temperature(overconfident, temperature)
    assert (
        evaluate.calibration(calibrated, labels)[0] < evaluate.calibration(overconfident, labels)[0]
    )
    np.testing.assert_array_equal(calibrated.argmax(-1), overconfident.argmax(-1))


def test_temperature_layer_matches_the_numpy_scaling():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]], np.float32)
    layer = model_lib.Temperature(2.5)
    np.testing.assert_allclose(
        layer(probabilities), evaluate.apply_temperature(probabilities, 2.5), atol=1e-6
    )
