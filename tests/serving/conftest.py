"""Fixtures of the serving tests: a tiny model, real image files, one published export, and
a real 20000 x 20000 PNG.

Session-scoped: one export (~15 s) serves every serving test module; tests copy it before
changing anything next to it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sft_tf.serving import export
from tests.helpers import tiny_classifier, write_image

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="session")
def tiny_model():
    return tiny_classifier(3, seed=0)


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate(
        [(32, 32), (50, 41), (17, 80), (64, 64), (33, 29), (40, 40), (90, 60)]
    ):
        ext = ".png" if i % 2 else ".jpg"
        paths.append(
            write_image(folder / f"{i}{ext}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        )
    return paths


@pytest.fixture(scope="session")
def pixel_limit():
    """The published export's max_image_pixels: not the default, so that tests see the run's
    own value recorded and applied, and cheap to exceed (1001 x 1000)."""
    return 1_000_000


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory):
    """A real 20000 x 20000 PNG of one colour: 90 KB on disk, 1.2 GB once decoded to RGB."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    # 1-bit: 50 MB in memory while Pillow writes it (~2 s); TF decodes it to 8-bit RGB.
    Image.new("1", (20000, 20000), 1).save(path)
    return path


@pytest.fixture(scope="session")
def published(tmp_path_factory, tiny_model, images, pixel_limit):
    root = tmp_path_factory.mktemp("published") / "tiny"
    path = export.export_for_serving(
        tiny_model,
        CLASSES,
        32,
        root,
        top_k=2,
        check_images=[p.read_bytes() for p in images],
        manifest={"backbone": "MobileNetV2", "test_metrics": {"phase2": {"accuracy": 0.5}}},
        max_image_pixels=pixel_limit,
    )
    return path
