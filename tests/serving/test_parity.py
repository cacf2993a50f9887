"""The parity check that stands between an export and its publication."""

from __future__ import annotations

import pytest
from PIL import Image

from sft_tf.serving import parity
from tests.helpers import exif_jpeg, photo, pil_bytes, tiny_classifier

CLASSES = ["cat", "dog", "fox"]


def test_verify_export_catches_a_different_model(published):
    path = published
    other = tiny_classifier(3, seed=1)
    with pytest.raises(RuntimeError, match="differs from the trained model"):
        parity.verify_export(path, other, 32, parity._sample_images(32))


def test_large_jpegs_serve_as_the_model_sees_them(published, tiny_model):
    """Large JPEGs decode scaled down (decode.decode_native), inside the export's graph too:
    every signature takes them, a turned phone photo and a grey one included, and agrees with
    the model on the pipeline's pixels."""
    large = [
        pil_bytes(Image.fromarray(photo(300, 200, seed=2)), "JPEG"),
        exif_jpeg(photo(120, 180, seed=3), 6),
        pil_bytes(Image.fromarray(photo(260, 140, seed=4)).convert("L"), "JPEG"),
    ]
    worst = parity.verify_export(published, tiny_model, 32, large)
    assert worst <= parity.PARITY_TOLERANCE


@pytest.mark.slow
def test_verify_export_catches_an_export_that_does_not_refuse_over_the_limit(
    published, tiny_model, images, pixel_limit
):
    """The published export refuses over its own limit: checked against a lower one, the
    image over that lower limit is answered (tried, and failed, as a decode) and the check
    stops the export."""
    encoded = [p.read_bytes() for p in images]
    worst = parity.verify_export(published, tiny_model, 32, encoded, max_image_pixels=pixel_limit)
    assert worst <= parity.PARITY_TOLERANCE
    with pytest.raises(RuntimeError, match=r"serving_default does not refuse an image over 1000 "):
        parity.verify_export(published, tiny_model, 32, encoded, max_image_pixels=1000)
