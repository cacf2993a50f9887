"""EXIF orientation, read and applied with TensorFlow ops so that the export does it in-graph.

Phone cameras store a portrait photo as landscape pixels plus an EXIF Orientation tag (0x0112)
saying how to turn it for display; `tf.io.decode_jpeg` ignores the tag, so without this such
photos train and serve sideways. The training pipeline and the serving signatures both decode
through `decode.decode_rgb`, which applies the tag: a served photo is turned exactly as in
training.

Only JPEG files carry the tag in practice (the Exif APP1 segment). The parse: find the
"Exif\\0\\0" header in the file's first 64 KB, read the TIFF byte order and the first IFD, and
take the Orientation entry's value; anything missing, out of range or malformed reads as 1
(as stored), never an error.
"""

from __future__ import annotations

import sys

import tensorflow as tf

SEARCH_BYTES = 65536  # the Exif APP1 segment comes first in camera files; a segment is < 64 KB
_TIFF_BYTES = 65536 + 16
ORIENTATION_TAG = 0x0112


def exif_orientation(encoded: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (int32 scalar, 1..8) of encoded image bytes; 1 when absent."""
    return tf.cond(
        tf.io.is_jpeg(encoded), lambda: _read_orientation(encoded), lambda: tf.constant(1)
    )


def _read_orientation(encoded: tf.Tensor) -> tf.Tensor:
    parts = tf.strings.split(tf.strings.substr(encoded, 0, SEARCH_BYTES), "Exif\0\0", maxsplit=1)
    # Most JPEGs from scanners, editors and the web have no Exif block: one search, no parse.
    return tf.cond(
        tf.size(parts) > 1,
        lambda: _parse_tiff(encoded, tf.strings.length(parts[0]) + 6),
        lambda: tf.constant(1, tf.int32),
    )


def _parse_tiff(encoded: tf.Tensor, start: tf.Tensor) -> tf.Tensor:
    """The Orientation entry of the first IFD of the TIFF block at byte `start` (1 if none)."""
    # Zero padding keeps every read below in bounds; a short segment then reads as zeros.
    tiff = tf.strings.substr(encoded, start, SEARCH_BYTES)
    tiff = tf.strings.substr(tf.strings.join([tiff, b"\0" * _TIFF_BYTES]), 0, _TIFF_BYTES)
    b = tf.cast(tf.io.decode_raw(tiff, tf.uint8), tf.int64)
    little = tf.equal(b[0], 0x49)  # "II": Intel byte order; "MM": Motorola

    def read(at: tf.Tensor, size: int) -> tf.Tensor:
        at = tf.clip_by_value(at, 0, _TIFF_BYTES - size)
        k = tf.range(size, dtype=tf.int64)
        digits = tf.gather(b, at[..., None] + k)
        weights = tf.where(little, 256**k, 256 ** (size - 1 - k))
        return tf.reduce_sum(digits * weights, axis=-1)

    ifd = read(tf.constant(4, tf.int64), 4)
    count = tf.minimum(read(ifd, 2), 256)  # IFD0 holds a few dozen entries at most
    entries = ifd + 2 + 12 * tf.range(count)
    inside = entries + 12 <= _TIFF_BYTES
    match = inside & tf.equal(read(entries, 2), ORIENTATION_TAG)
    values = tf.where(match, read(entries + 8, 2), 0)
    value = tf.cast(tf.reduce_max(tf.concat([values, [0]], 0)), tf.int32)
    return tf.where((ifd < _TIFF_BYTES) & (value >= 1) & (value <= 8), value, 1)


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Turns RGB pixels [H, W, 3] as EXIF `orientation` (1..8) says they are displayed."""
    both_axes = [0, 1]
    branches = [
        lambda: image,  # 1: as stored
        lambda: tf.reverse(image, [1]),  # 2: mirrored
        lambda: tf.reverse(image, both_axes),  # 3: upside down
        lambda: tf.reverse(image, [0]),  # 4: mirrored vertically
        lambda: _transpose(image),  # 5: mirrored along the main diagonal
        lambda: tf.reverse(_transpose(image), [1]),  # 6: shown turned 90 degrees clockwise
        lambda: tf.reverse(_transpose(image), both_axes),  # 7: the other diagonal
        lambda: tf.reverse(_transpose(image), [0]),  # 8: shown turned 90 degrees anticlockwise
    ]
    turned = tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)
    turned.set_shape([None, None, 3])
    return turned


def _transpose(rgb: tf.Tensor) -> tf.Tensor:
    """Swaps height and width of uint8 RGB pixels, bit for bit.

    TensorFlow's CPU transpose of 8- and 32-bit integers logs a oneDNN "falling back" line in
    every process that uses it (it would sit under each one-line error message); float32's
    does not. So each pixel's three bytes plus a fourth, 0x40, in the float's most significant
    byte are read as one float32: sign 0 and exponent 128 or 129, always a normal finite
    number, which a transpose moves without changing a bit.
    """
    pad = tf.fill(tf.concat([tf.shape(rgb)[:2], [1]], 0), tf.constant(0x40, tf.uint8))
    high_last = sys.byteorder == "little"  # where the float's top byte sits in memory
    quad = tf.concat([rgb, pad] if high_last else [pad, rgb], axis=-1)
    moved = tf.bitcast(tf.transpose(tf.bitcast(quad, tf.float32)), tf.uint8)
    return moved[..., :3] if high_last else moved[..., 1:]
