"""Shared fixtures: 2 logical CPUs (MirroredStrategy runs 2 real replicas), real image files.

Helpers the tests call live in tests/helpers.py; no test module imports another."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import make_image_folder, write_idx

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory) -> dict[str, Path]:
    """Train and test folders of real PNG/JPEG files for 3 classes."""
    base = tmp_path_factory.mktemp("images")
    return {
        "train": make_image_folder(base / "train", per_class=16, seed=0),
        "test": make_image_folder(base / "test", per_class=6, seed=1),
    }


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
