"""Pooled base features, computed once per image and base, shared by `sft-tf audit` and phase 1.

Both need the frozen base's pooled features of every image: the audit to find label errors
and outliers, phase 1 to train the head on cached features. The store keeps them on disk under
the pixel cache's folder (`data.cache_dir`, else <tmp>/sft_tf_cache), in features/<key>.npz,
one row per image name (`Examples.names()`), so a `train` after an `audit` of the same data
and base computes only the images the audit did not (its few-shot subset or hold-out are rows
of the audit's training split).

The key covers everything the features depend on: the backbone and its options, the weights
(the file's bytes, or "imagenet"), the input size and resize method, the pooling, the
precision policy, and the TensorFlow and Keras versions. A base with random weights is never
stored: its features depend on every random draw made before it was built. Rows are float32
as computed, so a head trained on stored features gets exactly the updates it would get from
fresh ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf.data import caches
from sft_tf.data.examples import Examples
from sft_tf.training import head_cache
from sft_tf.training.inputs import make_dataset

# The frozen base's pass runs in batches of about this many input pixels (at most 1024 images,
# never fewer than the global batch): small images go through in larger batches than training
# uses. At 32 px on 2 CPU cores, 5,000 images took 1.27 s in batches of 64 and 0.63 s in
# batches of 1024.
EXTRACTION_PIXELS = 2**22


def extraction_batch(image_size: int, global_batch: int) -> int:
    """Images per batch of the frozen base's feature pass."""
    return max(global_batch, min(1024, EXTRACTION_PIXELS // image_size**2))


def _weights_identity(weights: str) -> str:
    if weights == "imagenet" or not tf.io.gfile.exists(weights):
        return weights
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_key(config) -> str:
    """Names the features of this base at this input: equal keys, equal features."""
    m = config.model
    parts = {
        "backbone": m.backbone,
        "alpha": m.alpha,
        "weights": _weights_identity(m.weights),
        "image_size": m.image_size,
        "resize_method": config.data.resize_method,
        "pooling": m.pooling,
        "precision": keras.mixed_precision.global_policy().name,
        "versions": [tf.__version__, keras.__version__],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def store_path(config) -> Path:
    return Path(caches.cache_root(config.data.cache_dir)) / "features" / f"{store_key(config)}.npz"


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return dict(zip(stored["names"].tolist(), stored["features"]))
    except (OSError, ValueError, KeyError):  # absent, or left half-written by a crash
        return {}


def _write(path: Path, rows: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    names = list(rows)
    np.savez(temporary, names=np.asarray(names), features=np.stack([rows[n] for n in names]))
    os.replace(temporary, path)


def _extract(config, model: keras.Model, examples: Examples) -> np.ndarray:
    """The pooled features of `examples`, computed: the evaluation pipeline in
    `extraction_batch`es through the frozen base."""
    batch = extraction_batch(config.model.image_size, config.data.global_batch_size)
    dataset = make_dataset(config, examples, training=False, one_hot=False, batch_size=batch)
    return head_cache.extract(model, dataset)


def pooled_features(config, model: keras.Model, examples: Examples) -> np.ndarray:
    """float32 [N, D] pooled features of `examples` through `model`'s frozen base, in order:
    rows already in the store are read, the rest computed (`_extract`) and added to it. With
    random weights (model.weights empty) all are computed."""
    if not config.model.weights:
        return _extract(config, model, examples)
    path = store_path(config)
    rows = _read(path)
    names = examples.names()
    missing = np.asarray([i for i, n in enumerate(names) if n not in rows], np.int64)
    if len(missing):
        subset = examples.take(missing)  # record sources come back in stored order: by name
        computed = _extract(config, model, subset)
        rows.update(zip(subset.names(), computed))
        # A read-only or full cache folder costs a recomputation next time, no more.
        with contextlib.suppress(OSError):
            _write(path, rows)
    return np.stack([rows[n] for n in names]).astype(np.float32, copy=False)
