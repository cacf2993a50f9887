"""The export's in-graph pixel limit: an image's size read from its header, never decoded."""

import struct
import zlib

import pytest
import tensorflow as tf
from PIL import Image

from sft_tf.serving import signatures
from tests.helpers import photo, pil_bytes


def _limit_error(encoded: bytes, max_pixels: int) -> str:
    return signatures.pixel_limit_error(tf.constant(encoded), max_pixels).numpy().decode()


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk: all its size check reads."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_within_the_limit_is_no_error_and_above_it_names_both_sides(fmt):
    encoded = pil_bytes(Image.fromarray(photo(30, 40)), fmt)
    assert _limit_error(encoded, 30 * 40) == ""
    assert _limit_error(encoded, 30 * 40 - 1) == (
        "image is 40 x 30 = 1200 pixels, above this model's limit of 1199 pixels "
        "(data.max_image_pixels when it was exported); downscale it before sending"
    )


def test_a_forged_header_too_large_to_multiply_is_refused_not_wrapped_around():
    side = 2**31 - 1  # PNG's largest side: the product is near 2^62
    error = _limit_error(_png_header(side, side), 10_000)
    assert error.startswith(f"image is {side} x {side} = ")
    assert "above this model's limit of 10000 pixels" in error
    assert _limit_error(_png_header(100, 100), 10_000) == ""
