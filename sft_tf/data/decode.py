"""Decoding: any supported file (JPEG, PNG, GIF, BMP, WebP; grayscale, alpha, palette, CMYK,
16-bit; EXIF-rotated JPEGs turned upright) to RGB uint8 at the model's size, the same way in
training and in the export.

A JPEG at least twice the model's size on its short side is decoded at 1/2, 1/4 or 1/8 of its
stored size (libjpeg scales in the DCT domain, so the pixels it skips are never computed), the
smallest of those that keeps the short side at or above the model's size, and then resized as
any image. A 12-megapixel photo to 224 pixels: 34 ms instead of 62 ms a decode, the pixels
within 4 levels of a full decode (benchmarks/jpeg_decode.py). Training, the scan and the
export's signatures decode through the same function, so they agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from sft_tf.data import orientation

RESIZE_METHODS = ("resize", "crop", "pad")
JPEG_SCALES = (1, 2, 4, 8)  # the denominators libjpeg's scaled decoding offers

# The functions that run inside graphs (tf.data maps, serving signatures) are written with
# tf.cond, never Python control flow on tensors, and are marked not to be converted (so are
# augment.finish_batch and the pipeline's batch finisher): AutoGraph's rewrite of this code
# cost ~1 s of every small run's traces (measured on the scan).


@tf.autograph.experimental.do_not_convert
def decode_image(encoded: tf.Tensor, image_size: int, method: str = "resize") -> tf.Tensor:
    """Encoded image bytes -> RGB uint8 [image_size, image_size, 3].

    Reads JPEG (CMYK included), PNG (8 or 16 bit, grayscale, palette, alpha), GIF (the first
    frame of an animation), BMP and WebP. The training pipeline and the exported serving
    signature both call this, so a served image is decoded and resized exactly as in training.

    Args:
      encoded: a scalar tf.string.
      image_size: output height and width.
      method: "resize", "crop" or "pad" (see `resize`).

    Raises:
      tf.errors.InvalidArgumentError when run on bytes that are not a decodable image.
    """
    return resize(decode_rgb(encoded, image_size), image_size, method)


def decode_images(encoded: Sequence[bytes], image_size: int, method: str = "resize") -> np.ndarray:
    """A few encoded images (the export's check images) -> uint8 pixels [N, S, S, 3]."""
    return np.stack([decode_image(tf.constant(b), image_size, method).numpy() for b in encoded])


def decode_native(encoded: tf.Tensor, image_size: int | None = None) -> tf.Tensor:
    """Encoded bytes -> uint8 [H, W, C] with the file's own channels (1 gray, 2 gray+alpha, 3, 4).

    16-bit images are scaled to 8 bits; CMYK JPEGs come out as RGB (TF converts them). As
    stored: `decode_rgb` applies a JPEG's EXIF orientation.

    Args:
      encoded: a scalar tf.string.
      image_size: the size the image is decoded for: a JPEG whose short side is at least
        twice as long comes out scaled down (`jpeg_scale`). None: at the stored size.
    """

    def full():
        # expand_animations=False: a GIF gives its first frame, so every image has rank 3.
        return tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)

    def scaled_jpeg():
        # libjpeg's scale is an op attribute, fixed when traced: one branch per scale.
        branches = [
            (lambda r=r: tf.io.decode_jpeg(encoded, channels=0, ratio=r)) for r in JPEG_SCALES
        ]
        height, width = tf.unstack(tf.io.extract_jpeg_shape(encoded)[:2])
        return tf.switch_case(jpeg_scale(height, width, image_size), branches)

    # Without a size, or not a JPEG: at the stored size.
    image = full() if image_size is None else tf.cond(tf.io.is_jpeg(encoded), scaled_jpeg, full)
    image.set_shape([None, None, None])
    return image


def jpeg_scale(height: tf.Tensor, width: tf.Tensor, image_size: int) -> tf.Tensor:
    """The index into JPEG_SCALES of the scale a JPEG of this stored size is decoded at for
    `image_size`: the largest whose scaled short side is still at least image_size."""
    short = tf.minimum(tf.cast(height, tf.int64), tf.cast(width, tf.int64))
    fits = [tf.cast(short >= r * image_size, tf.int32) for r in JPEG_SCALES[1:]]
    return tf.add_n(fits)  # the scales grow, so those that fit are a prefix


@tf.autograph.experimental.do_not_convert
def decode_rgb(encoded: tf.Tensor, image_size: int | None = None) -> tf.Tensor:
    """Encoded bytes -> RGB uint8 [H, W, 3], upright (a JPEG's EXIF orientation applied: a
    phone's portrait photo, see orientation.py); transparency composited over white. At the
    stored size, or as decoded for `image_size` (see `decode_native`)."""
    return upright_rgb(decode_native(encoded, image_size), encoded)


def upright_rgb(image: tf.Tensor, encoded: tf.Tensor) -> tf.Tensor:
    """`decode_native`'s pixels of `encoded` -> RGB, turned as its EXIF orientation says."""
    return orientation.apply_orientation(to_rgb(image), orientation.exif_orientation(encoded))


def to_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, C] with C in 1..4 -> RGB uint8 [H, W, 3]."""
    channels = tf.shape(image)[-1]
    has_alpha = tf.equal(channels % 2, 0)
    colour = tf.cond(
        channels < 3,
        lambda: tf.image.grayscale_to_rgb(image[..., :1]),
        lambda: image[..., :3],
    )
    colour.set_shape([None, None, 3])

    def composite():
        # Transparent pixels often hold arbitrary colour (commonly black); shown on a page
        # they look white, so that is what the model sees, in training and serving alike.
        alpha = tf.cast(image[..., -1:], tf.float32) / 255.0
        mixed = tf.cast(colour, tf.float32) * alpha + 255.0 * (1.0 - alpha)
        return tf.cast(tf.round(mixed), tf.uint8)

    rgb = tf.cond(has_alpha, composite, lambda: colour)
    rgb.set_shape([None, None, 3])
    return rgb


@tf.autograph.experimental.do_not_convert
def resize(image: tf.Tensor, image_size: int, method: str = "resize") -> tf.Tensor:
    """Any-size uint8 [H, W, C] or [B, H, W, C] (C = 1 or 3) -> RGB uint8 at image_size.

    Args:
      image: one image or a batch.
      image_size: output height and width.
      method: "resize" stretches to a square (keeps everything, distorts the aspect);
        "crop" scales the short side to image_size and keeps the centre square;
        "pad" scales the long side to image_size and pads the rest with black.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method {method!r} is not one of {RESIZE_METHODS}")
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    size = [image_size, image_size]
    # antialias: without it, shrinking a large photo aliases badly.
    if method == "resize":
        image = tf.image.resize(image, size, antialias=True)
    elif method == "pad":
        image = tf.image.resize_with_pad(tf.cast(image, tf.float32), *size, antialias=True)
    else:
        hw = tf.cast(tf.shape(image)[-3:-1], tf.float32)
        scale = image_size / tf.reduce_min(hw)
        scaled = tf.cast(tf.math.ceil(hw * scale), tf.int32)
        image = tf.image.resize(image, scaled, antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, *size)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def stored_size(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(height, width) as int64 scalars, read from the image's header without decoding it.

    The sizes the decoder would allocate: JPEG's frame header, PNG's IHDR, GIF's logical screen,
    BMP's info header (a negative height is a top-down image) and WebP's VP8, VP8L or VP8X
    header. (0, 0) for anything else, which then fails to decode.

    Raises:
      tf.errors.InvalidArgumentError (when run) on a JPEG whose header is corrupt.
    """
    # The first 32 bytes hold every header read here; zero padding keeps short files in bounds.
    head = tf.strings.substr(tf.strings.join([encoded, b"\0" * 32]), 0, 32)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def little(at: int, size: int) -> tf.Tensor:
        return sum(b[at + k] * 256**k for k in range(size))

    def big(at: int, size: int) -> tf.Tensor:
        return sum(b[at + k] * 256 ** (size - 1 - k) for k in range(size))

    def starts(magic: bytes, at: int = 0) -> tf.Tensor:
        return tf.equal(tf.strings.substr(head, at, len(magic)), magic)

    def signed32(value: tf.Tensor) -> tf.Tensor:
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1]

    # VP8 and VP8L hold 14-bit sizes (VP8L's packed one after the other, minus 1).
    vp8l, bits14 = little(21, 4), 2**14
    webp = starts(b"RIFF") & starts(b"WEBP", 8)
    cases = [
        (starts(b"\x89PNG\r\n\x1a\n"), (big(20, 4), big(16, 4))),
        (starts(b"GIF8"), (little(8, 2), little(6, 2))),
        (starts(b"BM"), (signed32(little(22, 4)), signed32(little(18, 4)))),
        (webp & starts(b"VP8 ", 12), (little(28, 2) % bits14, little(26, 2) % bits14)),
        (webp & starts(b"VP8L", 12), (vp8l // bits14 % bits14 + 1, vp8l % bits14 + 1)),
        (webp & starts(b"VP8X", 12), (little(27, 3) + 1, little(24, 3) + 1)),
    ]
    zero = tf.constant(0, tf.int64)
    height, width = zero, zero
    for match, (h, w) in reversed(cases):
        height, width = tf.where(match, h, height), tf.where(match, w, width)
    return tf.cond(tf.io.is_jpeg(encoded), jpeg, lambda: (height, width))
