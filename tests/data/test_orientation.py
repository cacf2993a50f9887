"""EXIF orientation read and applied in-graph, against Pillow's reading of the same files."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from sft_tf.data import decode, orientation
from tests.helpers import exif_jpeg, pil_bytes

# Asymmetric: a bright corner block and a green strip tell every turn and mirror apart.
STORED = np.zeros((20, 30, 3), np.uint8)
STORED[:5, :10] = 255
STORED[10:, 25:, 1] = 200


@pytest.mark.parametrize("value", range(1, 9))
def test_every_orientation_turns_pixels_as_pillow_does(value):
    encoded = exif_jpeg(STORED, value)
    assert int(orientation.exif_orientation(tf.constant(encoded))) == value
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(encoded))), np.int16)
    ours = decode.decode_rgb(tf.constant(encoded)).numpy().astype(np.int16)
    assert ours.shape == upright.shape  # 5..8 swap height and width
    assert np.abs(ours - upright).mean() < 2  # the two JPEG decoders differ by rounding only


def test_a_phone_photo_decodes_upright_at_the_model_size():
    stored = exif_jpeg(STORED, 6)  # stored landscape, shown turned 90 degrees clockwise
    upright = pil_bytes(Image.fromarray(np.rot90(STORED, -1).copy()), "JPEG", quality=95)
    a = decode.decode_image(tf.constant(stored), 32).numpy().astype(np.int16)
    b = decode.decode_image(tf.constant(upright), 32).numpy().astype(np.int16)
    assert np.abs(a - b).mean() < 3


@pytest.mark.parametrize(
    "encoded",
    [
        pil_bytes(Image.fromarray(STORED), "PNG"),
        pil_bytes(Image.fromarray(STORED), "JPEG"),  # no EXIF at all
        b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\xff\xff",  # a truncated EXIF block
        b"\xff\xd8\xff",
        exif_jpeg(STORED, 1),
    ],
    ids=["png", "jpeg without exif", "truncated exif", "three bytes", "tagged as stored"],
)
def test_anything_without_a_valid_tag_reads_as_stored(encoded):
    assert int(orientation.exif_orientation(tf.constant(encoded))) == 1
