"""The up-front scan: every image decoded once (in parallel) to find the ones that cannot be,
with a reason each, and to count formats, sizes and exact duplicates for the audit. Images over
a pixel limit read from their header are never decoded. Asked to, it also keeps each image
resized to the model's size, so that the pipelines read the pixels instead of decoding the
files a second time (`keep_decoded`).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import tensorflow as tf

from sft_tf.config.schema import DEFAULT_MAX_IMAGE_PIXELS
from sft_tf.data.decode import decode_native, resize, stored_size, upright_rgb
from sft_tf.data.examples import Examples, encoded_images
from sft_tf.log import Progress

# The default pixel limit is Pillow's MAX_IMAGE_PIXELS (~90 megapixels, e.g. 9500 x 9500): above
# it an image is far more likely a decompression bomb or a scan at absurd resolution than a
# training photo, and decoding it takes gigabytes (a 20000 x 20000 PNG of 1.2 MB decodes to
# 1.2 GB of RGB).

BAD_IMAGE_POLICIES = ("skip", "fail")


@dataclasses.dataclass(frozen=True)
class ImageScan:
    """Per-example facts from decoding a split once (arrays aligned with the Examples).

    Attributes:
      ok: bool [N], False where decoding failed.
      reasons: {index: why it failed} for the examples that are not ok.
      height, width: int [N] of the stored image (0 where not ok).
      channels: int [N] as stored: 1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha.
      cmyk: bool [N], CMYK (or YCCK) JPEGs.
      digest: uint64 [N] fingerprint of the encoded bytes (of the pixels for in-memory data).
      thumbnails: uint8 [N, 32, 32] grayscale, upright (zeros where not ok): what the audit's
        perceptual hashes are computed from (1 KB an image), without decoding again.
      decoded: uint8 [N, S, S, 3] each image as the pipelines decode and resize it (zeros where
        not ok), when `scan_images` was asked to keep them; else None.
      decoded_as: (S, resize method) of `decoded`.
    """

    ok: np.ndarray
    reasons: dict[int, str]
    height: np.ndarray
    width: np.ndarray
    channels: np.ndarray
    cmyk: np.ndarray
    digest: np.ndarray
    thumbnails: np.ndarray | None = None
    decoded: tf.Tensor | None = dataclasses.field(default=None, compare=False, repr=False)
    decoded_as: tuple[int, str] | None = None

    def bad(self, examples: Examples) -> list[tuple[str, str]]:
        """[(location, reason)] of every example that could not be decoded, in order."""
        return [(examples.where(i), self.reasons[i]) for i in sorted(self.reasons)]


def _probe(
    encoded: tf.Tensor, max_pixels: int, keep: tuple[int, str] | None, image_size: int | None
) -> tuple[tf.Tensor, ...]:
    # The size check runs before the decode: a small file can decode to gigabytes.
    height, width = stored_size(encoded)
    fits = tf.debugging.assert_less_equal(
        height * width, tf.constant(max_pixels, tf.int64), message="too many pixels"
    )
    with tf.control_dependencies([fits]):
        # The same decode as training (to_rgb after it cannot fail on 1-4 channels), so an
        # image that passes here decodes in the pipeline too.
        image = decode_native(encoded, image_size)
    shape = tf.shape(image)
    is_jpeg = tf.io.is_jpeg(encoded)
    # A large JPEG decodes scaled down: its stored size is the header's.
    stored = (
        tf.where(is_jpeg, height, tf.cast(shape[0], tf.int64)),
        tf.where(is_jpeg, width, tf.cast(shape[1], tf.int64)),
    )
    cmyk = tf.cond(
        is_jpeg,
        # The JPEG header's component count: 4 means CMYK/YCCK (TF decodes it to RGB).
        lambda: tf.equal(tf.io.extract_jpeg_shape(encoded)[2], 4),
        lambda: tf.constant(False),
    )
    digest = tf.bitcast(tf.fingerprint(tf.expand_dims(encoded, 0))[0], tf.int64)
    upright = upright_rgb(image, encoded)
    found = (*stored, shape[2], cmyk, digest, thumbnail(upright))
    # `decode.decode_image`'s steps, on the pixels decoded above: the same values it gives.
    return found if keep is None else (*found, resize(upright, *keep))


@functools.cache
def _traced_probe(
    max_pixels: int, keep: tuple[int, str] | None, image_size: int | None
) -> tf.types.experimental.Function:
    """`_probe` as a tf.function: traced once per process and setting, so scanning a run's
    second and third split reuses the first one's graph (its trace, with the EXIF parse and
    autograph, is ~1 s of a small run's scan)."""
    return tf.function(
        lambda encoded: _probe(encoded, max_pixels, keep, image_size),
        input_signature=[tf.TensorSpec([], tf.string)],
        autograph=False,
    )


THUMBNAIL = 32  # pixels a side: the size a 64-bit DCT perceptual hash reads


def thumbnail(rgb: tf.Tensor) -> tf.Tensor:
    """uint8 RGB [H, W, 3] (or a batch) -> the uint8 grayscale [32, 32] the audit hashes."""
    small = tf.image.resize(tf.image.rgb_to_grayscale(rgb), [THUMBNAIL, THUMBNAIL], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(small), 0, 255), tf.uint8)[..., 0]


def _why_undecodable(encoded: bytes, max_pixels: int, image_size: int | None) -> str:
    if not encoded:
        return "empty file (0 bytes)"
    try:
        height, width = (int(v) for v in stored_size(tf.constant(encoded)))
        if height * width > max_pixels:
            return (
                f"{width} x {height} pixels is over data.max_image_pixels={max_pixels}; "
                "downscale it or raise the limit"
            )
        _probe(tf.constant(encoded), max_pixels, None, image_size)
    except tf.errors.OpError as e:
        message = e.message.split("}}")[-1].strip().splitlines()[0]
        if "Unknown image file format" in message:
            return "not an image (unknown format; JPEG, PNG, GIF, BMP and WebP are read)"
        if "jpeg::Uncompress failed" in message or "Invalid JPEG data" in message:
            return "truncated or corrupt JPEG"
        return f"undecodable: {message[:200]}"
    return "undecodable (failed in the pipeline, decodes alone)"


def scan_images(
    examples: Examples,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    keep: tuple[int, str] | None = None,
    image_size: int | None = None,
) -> ImageScan:
    """Decodes every example once (in parallel) and records what it found.

    Args:
      examples: any split.
      max_pixels: images with more pixels (height x width, read from the header) are not
        decoded but counted as bad (data.max_image_pixels).
      keep: (image size, resize method): also keep every image decoded and resized as the
        pipelines would (`ImageScan.decoded`; S * S * 3 bytes an image). Ignored for
        in-memory pixels, which need no decoding.
      image_size: the model's input size, for which large JPEGs are decoded scaled down, as
        the pipelines decode them (`decode.decode_native`; the thumbnails are made from those
        pixels); with `keep`, keep's size. None: every image at its stored size.

    Returns:
      An `ImageScan` aligned with `examples`.
    """
    n = len(examples)
    height, width, channels = (np.zeros(n, np.int64) for _ in range(3))
    cmyk, ok = np.zeros(n, bool), np.zeros(n, bool)
    digest = np.zeros(n, np.uint64)
    thumbs = np.zeros((n, THUMBNAIL, THUMBNAIL), np.uint8)
    if examples.pixels is not None:
        import hashlib

        ok[:] = True
        height[:], width[:], channels[:] = examples.pixels.shape[1:4]
        for i, pixels in enumerate(examples.pixels):
            raw = hashlib.blake2b(pixels.tobytes(), digest_size=8).digest()
            digest[i] = int.from_bytes(raw, "little")
        for start in range(0, n, 4096):
            batch = tf.convert_to_tensor(examples.pixels[start : start + 4096])
            rgb = tf.image.grayscale_to_rgb(batch) if batch.shape[-1] == 1 else batch[..., :3]
            thumbs[start : start + 4096] = thumbnail(rgb).numpy()
        return ImageScan(ok, {}, height, width, channels, cmyk, digest, thumbs)
    if keep is not None:
        if image_size not in (None, keep[0]):
            raise ValueError(f"image_size={image_size} differs from keep's size {keep[0]}")
        image_size = keep[0]
    kept = None if keep is None else _aligned_pixels(n, keep[0])
    probe = _traced_probe(max_pixels, keep, image_size)
    ds = encoded_images(examples).map(
        lambda i, encoded: (i, *probe(encoded)),
        # Decoding is the whole cost of a scan: every core, in any order.
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    # A failing decode drops its element; the indices that never arrive are the bad ones.
    ds = ds.ignore_errors().batch(1024)
    with Progress(f"Checking {examples.origin or 'the images'}", n) as progress:
        for i, h, w, c, k, d, t, *pixels in ds.as_numpy_iterator():
            ok[i], height[i], width[i], channels[i], cmyk[i] = True, h, w, c, k
            digest[i], thumbs[i] = d.view(np.uint64), t
            if pixels:
                kept[i] = pixels[0]
            progress.update(progress.done + len(i))
    reasons = _failure_reasons(examples, np.flatnonzero(~ok), max_pixels, image_size)
    # A tensor, so that the pipelines' datasets read it without a copy each (from a NumPy
    # array, tf.data copies the pixels into every dataset made from them). Through DLPack it
    # shares the array's memory: tf.convert_to_tensor would hold two more copies at its peak
    # (measured: +440 MB for 146 MB of pixels).
    decoded = None if kept is None else tf.experimental.dlpack.from_dlpack(kept.__dlpack__())
    return ImageScan(ok, reasons, height, width, channels, cmyk, digest, thumbs, decoded, keep)


def _failure_reasons(
    examples: Examples, failed: np.ndarray, max_pixels: int, image_size: int | None
) -> dict[int, str]:
    """{index: why} for the examples that failed the scan, decoded again one by one, eagerly."""
    reasons = {}
    if examples.paths is not None:
        for i in map(int, failed):
            try:
                encoded = tf.io.gfile.GFile(examples.paths[i], "rb").read()
            except tf.errors.OpError as e:
                reasons[i] = f"unreadable: {e.message[:200]}"
                continue
            reasons[i] = _why_undecodable(encoded, max_pixels, image_size)
    elif len(failed):
        bad = examples.take(np.asarray(failed))
        for (_, encoded), i in zip(encoded_images(bad).as_numpy_iterator(), map(int, failed)):
            reasons[i] = _why_undecodable(encoded, max_pixels, image_size)
    return reasons


def _aligned_pixels(count: int, size: int) -> np.ndarray:
    """Zeros uint8 [count, size, size, 3] at a 64-byte aligned address, which TensorFlow needs
    to use the memory as a tensor's without copying it."""
    nbytes = count * size * size * 3
    raw = np.zeros(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes].reshape(count, size, size, 3)


def keep_decoded(examples: Examples, scan: ImageScan) -> Examples:
    """`examples` (the split scanned, before `drop_bad`) carrying the scan's decoded pixels
    (when it kept them) for the pipelines."""
    if scan.decoded is None:
        return examples
    if len(examples) != len(scan.ok):
        raise ValueError(f"{len(examples)} examples for a scan of {len(scan.ok)}")
    return dataclasses.replace(examples, decoded=scan.decoded, decoded_as=scan.decoded_as)


def drop_bad(examples: Examples, scan: ImageScan) -> Examples:
    """The examples that decoded; step counts computed from the result are right."""
    return examples if scan.ok.all() else examples.take(np.flatnonzero(scan.ok))
