"""Class weighting and balanced resampling: weights in the batches, minority recall raised."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data import balance as balance_lib
from sft_tf.data import examples as examples_lib
from sft_tf.data import pipeline as pipeline_lib
from sft_tf.data import sources as sources_lib
from sft_tf.errors import UserError
from tests.helpers import write_image


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


def _minority_recall(train_ds, test: examples_lib.Examples, steps: int) -> float:
    model = _colour_model()
    model.fit(train_ds, epochs=15, steps_per_epoch=steps, shuffle=False, verbose=0)
    predicted = model.predict(pipeline_lib.build_dataset(test, 16, 32, False), verbose=0).argmax(-1)
    rare = test.class_names.index("rare")
    return float(np.mean(predicted[test.labels == rare] == rare))


@pytest.mark.slow
def test_balanced_weighting_and_resampling_raise_minority_recall(imbalanced):
    train_ex = sources_lib.load_examples(f"folder:{imbalanced['train']}")
    test_ex = sources_lib.load_examples(f"folder:{imbalanced['test']}")
    assert list(train_ex.counts()) == [200, 10]
    weights = balance_lib.class_weights("balanced", train_ex.class_names, train_ex.counts())
    np.testing.assert_allclose(weights, [210 / (2 * 200), 210 / (2 * 10)], rtol=1e-6)
    steps = len(train_ex) // 16

    def pipeline(**kw):
        return pipeline_lib.build_dataset(
            train_ex, 16, 16, True, seed=0, num_classes=2, until_epoch=15, **kw
        )

    plain = _minority_recall(pipeline(), test_ex, steps)
    weighted = _minority_recall(pipeline(class_weights=weights), test_ex, steps)
    resampled = _minority_recall(pipeline(resample="balanced"), test_ex, steps)
    assert weighted > plain + 0.2, (plain, weighted)
    assert resampled > plain + 0.2, (plain, resampled)


def test_class_weights_ride_in_the_batches(imbalanced):
    examples = sources_lib.load_examples(f"folder:{imbalanced['train']}")
    weights = balance_lib.class_weights("rare:5", examples.class_names, examples.counts())
    np.testing.assert_array_equal(weights, [1.0, 5.0])
    images, labels, sample_weight = next(
        iter(
            pipeline_lib.build_dataset(examples, 16, 64, True, num_classes=2, class_weights=weights)
        )
    )
    assert images.dtype == tf.uint8 and labels.shape == (64, 2)
    np.testing.assert_array_equal(sample_weight, weights[labels.numpy().argmax(-1)])
    # Evaluation batches carry no weights.
    assert len(next(iter(pipeline_lib.build_dataset(examples, 16, 8, False, num_classes=2)))) == 2


def test_resampling_draws_classes_equally(imbalanced):
    examples = sources_lib.load_examples(f"folder:{imbalanced['train']}")
    ds = pipeline_lib.build_dataset(
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
        balance_lib.class_weights(text, ("common", "rare"), np.array([5, 1]), "config.data.x")
    assert "config.data.x=" in str(error.value)
