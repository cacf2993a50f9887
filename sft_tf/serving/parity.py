"""The export's check before it is published: reloaded, every signature run, outputs equal to
the in-memory model's within tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf.data import decode
from sft_tf.evaluation import metrics as metrics_lib
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


def verify_export(
    path: str | Path,
    model: keras.Model,
    image_size: int,
    encoded: Sequence[bytes],
    resize_method: str = "resize",
    loaded=None,
) -> float:
    """Reloads an export and checks every signature against the in-memory model.

    The same images go in as encoded bytes, as tf.train.Examples and as pixels (at their own
    size, so the in-graph resize is checked too).

    Args:
      loaded: the export already loaded with `tf.saved_model.load` (else it is loaded here).

    Returns:
      The max abs difference of probabilities.

    Raises:
      RuntimeError: a signature is missing or disagrees beyond PARITY_TOLERANCE or on top-1.
    """
    loaded = loaded or tf.saved_model.load(str(path))
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise RuntimeError(f"export {path} lacks signatures {missing}")
    pixels = decode.decode_images(encoded, image_size, resize_method)
    expected = metrics_lib.predict_pixels(model, pixels)
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
    worst = 0.0
    for name, out in got.items():
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
