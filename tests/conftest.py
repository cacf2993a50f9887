"""Shared fixtures: 2 logical CPUs (MirroredStrategy runs 2 real replicas), real image files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

REPO = Path(__file__).resolve().parents[1]
# Distinct mean colours make the toy classes learnable in a few steps.
CLASS_COLOURS = {"cat": (200, 60, 60), "dog": (60, 200, 60), "fox": (60, 60, 200)}


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Encodes uint8 pixels by the file's extension (PNG or JPEG) with TensorFlow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
    path.write_bytes(encode(pixels).numpy())
    return path


def make_image_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """root/<class>/<i>.(png|jpg): noisy images of a class colour, assorted sizes, one nested."""
    rng = np.random.default_rng(seed)
    for c, (name, colour) in enumerate(CLASS_COLOURS.items()):
        for i in range(per_class):
            h, w = 28 + (i % 3) * 9, 30 + (i % 4) * 5
            noise = rng.normal(0, 40, (h, w, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            sub = "nested" if i == 0 else ""
            ext = ".png" if (i + c) % 2 else ".jpg"
            write_image(root / name / sub / f"{i:03d}{ext}", pixels)
    return root


def tiny_classifier(
    num_classes: int = 3, batchnorm: str = "frozen", weights: str = "", seed: int = 0
):
    """The tiny MobileNetV2 classifier with working activations and a seeded random head.

    Random-init BatchNorm statistics (mean 0, variance 1) shrink a deep net's activations to
    ~1e-9, so every image would get the same output and nothing would train; statistics
    re-estimated on random images stand in for pretrained ones.
    """
    import keras

    from sft_tf import model as model_lib

    keras.utils.set_random_seed(seed)  # the same seed builds the same weights
    model = model_lib.build_classifier(
        "MobileNetV2", num_classes, 32, weights=weights, batchnorm=batchnorm, alpha=0.35
    )
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    model_lib.recalibrate_batchnorm(
        model, tf.data.Dataset.from_tensors((images, images[:, 0, 0, 0])), 1
    )
    head = model.get_layer("probabilities")
    head.kernel.assign(rng.normal(0, 0.5, head.kernel.shape).astype("float32"))
    return model


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory) -> dict[str, Path]:
    """Train and test folders of real PNG/JPEG files for 3 classes."""
    base = tmp_path_factory.mktemp("images")
    return {
        "train": make_image_folder(base / "train", per_class=16, seed=0),
        "test": make_image_folder(base / "test", per_class=6, seed=1),
    }


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes an IDX file (MNIST's container) — the format the Debian package ships, gzipped."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory) -> Path:
    """A small Fashion-MNIST-shaped IDX set: 10 classes, each a different stripe pattern."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for split, n in (("train", 400), ("t10k", 100)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, :, label * 2 : label * 2 + 6] = 230
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root
