"""The export's check before it is published: reloaded, every signature run, outputs equal to
the in-memory model's within tolerance, and an image over the pixel limit refused in its row
while the others are answered.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf.data import decode
from sft_tf.evaluation import inference
from sft_tf.serving.layout import IMAGE_KEY, SIGNATURES

# Max abs difference of probabilities between the reloaded export and the in-memory model.
PARITY_TOLERANCE = 1e-4


def _sample_images(image_size: int, count: int = 4, seed: int = 0) -> list[bytes]:
    """A few encoded images of assorted sizes to check the export with when none are given."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = image_size + 7 * i, image_size + 3 * i
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append(tf.io.encode_png(pixels).numpy())
    return out


def image_example(encoded: bytes) -> bytes:
    """A serialized tf.train.Example holding one encoded image under `image/encoded`."""
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
    example = tf.train.Example(features=tf.train.Features(feature={IMAGE_KEY: feature}))
    return example.SerializeToString()


def oversized_png(max_pixels: int) -> bytes:
    """A PNG header (signature, IHDR, IEND; no pixel data) of a square image with more than
    `max_pixels` pixels: what an export must refuse from its header, before any decode."""
    side = math.isqrt(max_pixels) + 1

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def verify_export(
    path: str | Path,
    model: keras.Model,
    image_size: int,
    encoded: Sequence[bytes],
    resize_method: str = "resize",
    loaded=None,
    max_image_pixels: int | None = None,
) -> float:
    """Reloads an export and checks every signature against the in-memory model.

    The same images go in as encoded bytes, as tf.train.Examples and as pixels (at their own
    size, so the in-graph resize is checked too).

    Args:
      loaded: the export already loaded with `tf.saved_model.load` (else it is loaded here).
      max_image_pixels: the export's pixel limit: the bytes signatures must refuse an image
        over it in its row and answer the rest (None: not checked).

    Returns:
      The max abs difference of probabilities.

    Raises:
      RuntimeError: a signature is missing or disagrees beyond PARITY_TOLERANCE or on top-1,
        refuses a check image, or answers an image over the pixel limit.
    """
    loaded = loaded or tf.saved_model.load(str(path))
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise RuntimeError(f"export {path} lacks signatures {missing}")
    pixels = decode.decode_images(encoded, image_size, resize_method)
    expected = inference.outputs(model, pixels)[0]
    sig = loaded.signatures
    # Pixels go in one image at a time at their own size, so the in-graph resize is checked
    # (decoded for the model's size: a large JPEG as serving_default decodes it, scaled down).
    raw = [decode.decode_rgb(tf.constant(b), image_size)[None] for b in encoded]
    got = {
        "serving_default": sig["serving_default"](image_bytes=tf.constant(list(encoded))),
        "serving_tf_example": sig["serving_tf_example"](
            examples=tf.constant([image_example(b) for b in encoded])
        ),
        "serving_images": {
            key: tf.concat([sig["serving_images"](images=x)[key] for x in raw], axis=0)
            for key in ("probabilities", "class_ids")
        },
    }
    if max_image_pixels is not None and math.isqrt(max_image_pixels) < 2**31 - 1:
        # (Above that, no PNG can be over the limit.)
        _check_refusal(path, sig, encoded[0], expected[0], max_image_pixels)
    worst = 0.0
    for name, out in got.items():
        # (serving_images' outputs are gathered per image above, without `error`.)
        refused = [e for e in out["error"].numpy() if e] if "error" in out else []
        if refused:
            raise RuntimeError(f"export {path}: {name} refused a check image: {refused[0]!r}")
        probabilities, ids = out["probabilities"].numpy(), out["class_ids"].numpy()[:, 0]
        diff = float(np.max(np.abs(probabilities - expected)))
        worst = max(worst, diff)
        same_top1 = np.array_equal(ids, expected.argmax(-1))
        if diff > PARITY_TOLERANCE or not same_top1:
            raise RuntimeError(
                f"export {path}: {name} differs from the trained model (max |dp| = {diff:.2e}, "
                f"same top-1: {same_top1}); not published"
            )
    return worst


def _check_refusal(path, sig, good: bytes, expected: np.ndarray, max_image_pixels: int) -> None:
    """A batch of a good image and one over the limit, to the bytes signatures: the second row
    refused with a reason, the first answered as alone."""
    pair = [good, oversized_png(max_image_pixels)]
    calls = {
        "serving_default": lambda: sig["serving_default"](image_bytes=tf.constant(pair)),
        "serving_tf_example": lambda: sig["serving_tf_example"](
            examples=tf.constant([image_example(b) for b in pair])
        ),
    }
    for name, call in calls.items():
        try:
            fault = _refusal_fault({k: v.numpy() for k, v in call().items()}, expected)
        except tf.errors.OpError as e:  # it decoded the image (a header alone): all rows failed
            fault = f"the batch failed: {e.message.strip()[:200]}"
        if fault:
            raise RuntimeError(
                f"export {path}: {name} does not refuse an image over {max_image_pixels} "
                f"pixels in its own row ({fault}); not published"
            )


def _refusal_fault(out: dict, expected: np.ndarray) -> str | None:
    """What is wrong with the answer to [good image, image over the limit], or None."""
    if "error" not in out:
        return "no error output"
    errors = out["error"].tolist()
    if errors[0] or not errors[1] or out["class_ids"][1].max() >= 0:
        return f"errors {errors}, class ids {out['class_ids'].tolist()}"
    diff = float(np.max(np.abs(out["probabilities"][0] - expected)))
    return f"the good row differs by {diff:.2e}" if diff > PARITY_TOLERANCE else None
