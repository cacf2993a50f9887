"""Decoding every format to RGB uint8, transparency, the resize methods, and large JPEGs
decoded scaled down."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sft_tf.data import decode
from tests import helpers


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("encoder", ["png", "jpeg", "gif", "bmp"])
def test_decode_image_gives_rgb_uint8_at_size(encoder, channels):
    pixels = np.random.default_rng(0).integers(0, 255, (20, 30, channels), dtype=np.uint8)
    if encoder in ("png", "jpeg"):
        encoded = getattr(tf.io, f"encode_{encoder}")(pixels)
    elif encoder == "gif":
        # TF cannot write GIF or BMP: a minimal 1x1 GIF89a and a 2x2 24-bit BMP by hand.
        encoded = tf.constant(
            b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\x00\x00\x00\x00\x00,\x00\x00\x00\x00"
            b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
        )
    else:
        row = b"\x00\x00\xff\x00\xff\x00" + b"\x00\x00"  # two BGR pixels + padding to 4 bytes
        header = b"BM" + (54 + 16).to_bytes(4, "little") + b"\0" * 4 + (54).to_bytes(4, "little")
        info = (40).to_bytes(4, "little") + (2).to_bytes(4, "little") + (2).to_bytes(4, "little")
        info += (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + b"\0" * 24
        encoded = tf.constant(header + info + row * 2)
    image = decode.decode_image(encoded, 16)
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8


@pytest.mark.parametrize("name", sorted(helpers.odd_images()))
def test_odd_formats_decode_to_the_right_rgb(name):
    encoded = helpers.odd_images((220, 30, 30))[name]
    image = decode.decode_image(tf.constant(encoded), 16).numpy()
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    # The animated GIF's first frame is red; its second frame (the inverse) would be cyan.
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), (220, 30, 30), atol=12)


def test_transparency_is_composited_over_white():
    rgba = np.zeros((8, 8, 4), np.uint8)  # black, fully transparent
    rgba[:4, :, :] = (0, 0, 255, 255)  # top half opaque blue
    image = decode.decode_rgb(tf.io.encode_png(rgba)).numpy()
    assert image[0, 0].tolist() == [0, 0, 255] and image[7, 7].tolist() == [255, 255, 255]
    gray_alpha = np.stack([np.full((4, 4), 40, np.uint8), np.full((4, 4), 0, np.uint8)], -1)
    assert decode.decode_rgb(tf.io.encode_png(gray_alpha)).numpy()[0, 0].tolist() == [255] * 3


def test_resize_methods_on_a_wide_image():
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20], wide[:, 20:40], wide[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    stretched = decode.resize(tf.constant(wide), 12, "resize").numpy()
    cropped = decode.resize(tf.constant(wide), 12, "crop").numpy()
    padded = decode.resize(tf.constant(wide), 12, "pad").numpy()
    # resize keeps all three stripes, squeezed; crop keeps the green centre square only.
    assert stretched[6, 0].tolist() == [255, 0, 0] and stretched[6, 11].tolist() == [0, 0, 255]
    assert (cropped[..., 1] > 200).all() and (cropped[..., [0, 2]] < 50).all()
    # pad keeps the whole image at 12x4 and fills rows above and below with black.
    assert padded[0].max() == 0 and padded[-1].max() == 0
    assert padded[6, 0].tolist() == [255, 0, 0] and padded[6, 11].tolist() == [0, 0, 255]
    # A batch (the export's serving_images path) gives the same pixels per image.
    for method, single in (("resize", stretched), ("crop", cropped), ("pad", padded)):
        batch = decode.resize(tf.constant(np.stack([wide, wide])), 12, method).numpy()
        np.testing.assert_array_equal(batch[1], single)
    with pytest.raises(ValueError, match="squash"):
        decode.resize(tf.constant(wide), 12, "squash")


@pytest.mark.parametrize(
    "height, width, size, ratio",
    [(3024, 4032, 224, 8), (447, 600, 224, 1), (448, 600, 224, 2), (600, 448, 224, 2),
     (100, 100, 32, 2), (128, 999, 32, 4), (31, 31, 32, 1)],
)  # fmt: skip
def test_jpeg_scale_keeps_the_short_side_at_least_the_model_size(height, width, size, ratio):
    assert decode.JPEG_SCALES[int(decode.jpeg_scale(height, width, size))] == ratio
    assert -(-min(height, width) // ratio) >= min(size, min(height, width))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_large_jpeg_decodes_scaled_down_and_close_to_a_full_decode(mode):
    pixels = helpers.photo(200, 300)
    encoded = tf.constant(helpers.pil_bytes(Image.fromarray(pixels).convert(mode), "JPEG"))
    # Short side 200 for 32 px: 1/4 (50) still covers 32, 1/8 (25) would not.
    assert decode.decode_rgb(encoded, 32).shape == (50, 75, 3)
    full = decode.decode_rgb(encoded)
    assert full.shape == (200, 300, 3)
    ours = decode.decode_image(encoded, 32).numpy().astype(int)
    reference = decode.resize(full, 32).numpy().astype(int)
    # Within a few levels (measured: at most 3, 0.9 on average; CMYK at 96 px at most 5).
    assert np.abs(ours - reference).max() <= 6 and np.abs(ours - reference).mean() < 1.5
    # Other formats, and JPEGs under twice the size, decode as stored.
    assert decode.decode_rgb(tf.io.encode_png(pixels), 32).shape == (200, 300, 3)
    assert decode.decode_rgb(encoded, 101).shape == (200, 300, 3)


def test_a_large_phone_photo_is_scaled_then_turned_upright():
    stored = helpers.photo(200, 300)
    stored[:, :40] = 0  # a dark left edge: the top once turned upright (orientation 6)
    encoded = tf.constant(helpers.exif_jpeg(stored, 6))
    upright = decode.decode_rgb(encoded, 32).numpy()
    assert upright.shape == (75, 50, 3)
    assert upright[:5].mean() < 20 < upright[-5:].mean()


@pytest.mark.parametrize(
    "fmt, mode, options, height, width",
    [
        ("PNG", "RGB", {}, 3, 70_000),  # IHDR: 4 bytes a side, big-endian
        ("JPEG", "RGB", {}, 65_500, 2),  # the frame header, through extract_jpeg_shape
        ("GIF", "P", {}, 2, 65_535),  # the logical screen: 2 bytes a side, little-endian
        ("BMP", "RGB", {}, 2, 70_000),  # the info header: 4 bytes a side, signed
        ("WEBP", "RGB", {}, 3, 16_383),  # VP8: 14 bits a side
        ("WEBP", "RGB", {"lossless": True}, 16_383, 3),  # VP8L: 14-bit sides, packed
        ("WEBP", "RGBA", {}, 2, 16_383),  # VP8X (alpha): 3 bytes a side
    ],
)
def test_stored_size_reads_each_header_without_decoding(fmt, mode, options, height, width):
    """Sides whose every header byte counts (what the serving signatures' pixel limit and the
    scan's read), from files Pillow writes."""
    encoded = helpers.pil_bytes(Image.new(mode, (width, height)), fmt, **options)
    got = [int(v) for v in decode.stored_size(tf.constant(encoded))]
    assert got == [height, width]
    if fmt == "BMP":  # rows stored top-down: a negative height
        flipped = encoded[:22] + (-height).to_bytes(4, "little", signed=True) + encoded[26:]
        assert [int(v) for v in decode.stored_size(tf.constant(flipped))] == [height, width]
