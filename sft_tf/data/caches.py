"""Where decoded pixels are cached (memory, a disk file, or not at all) and how far a training
split's shuffle reaches because of it; the phase-1 feature and phase-2 activation caches follow
the same policy (`resolve_cache`) under the same root (`cache_root`).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf

from sft_tf.data.examples import Examples

CACHE_MODES = ("auto", "memory", "disk", "off")
# Examples per entry of a disk cache. Until a file cache is complete, TF's writer holds an
# index entry in memory for every tensor it wrote: one (image, label) pair at a time, writing
# the cache of 50,000 JPEGs at 32 px raised the peak resident memory by 72 MB (1.4 KB an
# image), in groups of 256 by 13 MB (measured). The groups are split again as they are read.
DISK_GROUP = 256


def cache_plan(
    examples: Examples, image_size: int, mode: str, budget_mb: int, directory: str, tag: str
) -> str:
    """Where `build_dataset` caches decoded pixels: "memory", "off" or a cache file path.

    Args:
      examples: the split.
      image_size: output height and width.
      mode: "auto" (memory when the decoded split fits in `budget_mb`, else disk), "memory",
        "disk" or "off".
      budget_mb: memory the decoded-pixel cache may take.
      directory: where disk caches go (the run's workdir).
      tag: distinguishes caches of different splits.

    Returns:
      The `cache` argument for `build_dataset`.
    """
    mode = cache_mode(examples, image_size, mode, budget_mb)
    if mode != "disk":
        return mode
    # The file name hashes everything that changes the cached pixels, so a stale cache from
    # other data, size or method is never replayed.
    import hashlib

    # The group size too: a cache written one example at a time (before groups) is not read
    # as groups; it is written again under the new name.
    h = hashlib.sha256(f"{image_size}|{examples.origin}|{tag}|{DISK_GROUP}".encode())
    h.update(np.asarray(examples.labels).tobytes())
    locations = examples.paths if examples.paths is not None else examples.positions
    if locations is not None:
        h.update("\n".join(map(str, locations)).encode())
    path = os.path.join(directory, f"{tag}-{h.hexdigest()[:16]}")
    tf.io.gfile.makedirs(directory)  # TF's file cache does not create its folder
    # A run killed while writing the cache leaves a lock file that makes every later run fail
    # ("concurrent caching iterator"); runs are assumed not to share a cache_dir concurrently.
    for stale in tf.io.gfile.glob(path + "_*.lockfile") + tf.io.gfile.glob(path + "*.tempstate*"):
        tf.io.gfile.remove(stale)
    return path


def pixels_mb(examples: Examples, image_size: int) -> float:
    """MB of a split's decoded uint8 RGB pixels at the model's size."""
    return len(examples) * image_size * image_size * 3 / 2**20


def cache_mode(examples: Examples, image_size: int, mode: str, budget_mb: int) -> str:
    """`data.cache` resolved for a split's pixels: "memory", "disk" or "off" (`cache_plan`)."""
    return resolve_cache(pixels_mb(examples, image_size), mode, budget_mb)


def resolve_cache(size_mb: float, mode: str, budget_mb: int) -> str:
    """`data.cache` for `size_mb` of cached data: "auto" is memory within the budget, else
    disk; the other modes stand."""
    if mode != "auto":
        return mode
    return "memory" if size_mb <= budget_mb else "disk"


def cache_root(cache_dir: str) -> str:
    """`data.cache_dir`, or <system temp dir>/sft_tf_cache when it is empty: where pixel,
    feature and activation caches go."""
    return cache_dir or os.path.join(tempfile.gettempdir(), "sft_tf_cache")


def training_shuffle_buffer(
    examples: Examples, image_size: int, cache: str, memory_budget_mb: int, batch_size: int
) -> int:
    """The shuffle buffer of a training split's examples given its cache (`cache_plan`'s or
    `cache_mode`'s answer): a full buffer over an in-memory cache and over uncached files
    (shuffled by name), else bounded by the budget. The phase-2 activation cache shuffles
    with the same buffer to get the same order."""
    if cache == "off" and examples.paths is not None:
        return len(examples)
    if cache == "memory":
        return len(examples)
    return max(batch_size, min(len(examples), memory_budget_mb * 2**20 // (image_size**2 * 3)))
