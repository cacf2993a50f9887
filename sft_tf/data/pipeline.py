"""Labelled examples -> tf.data pipelines of (uint8 images, labels).

`build_dataset` turns a split's `Examples` (undecodable images already dropped by the scan)
into the batches every trainer here consumes: `(uint8 [B, H, W, 3], int32 [B])` with static
shapes, or for the trainers one-hot float32 labels [B, C] and, with class weighting, a third
element: per-example sample weights. Decoded pixels are cached (`caches.cache_plan`), and training
batches come from an epoch-indexed stream (`epoch_stream`), so a resumed run gets exactly the
batches an uninterrupted one would. Where the examples come from: `specs` and `sources`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from sft_tf.data import augment as augment_lib
from sft_tf.data import balance as balance_lib
from sft_tf.data.caches import DISK_GROUP, training_shuffle_buffer
from sft_tf.data.decode import decode_image, resize
from sft_tf.data.examples import Examples, encoded_images
from sft_tf.errors import UserError


def epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """The shuffling seed of one training epoch: a function of the run's seed and the epoch."""
    return seed * 1_000_003 + tf.cast(epoch, tf.int64)


def epoch_shuffled(
    ds: tf.data.Dataset, buffer: int, seed: int
) -> Callable[[tf.Tensor], tf.data.Dataset]:
    """epoch -> `ds` shuffled for that epoch. The one shuffle of every training stream (the
    image pipeline, phase 1's cached features, phase 2's cached activations): over the same
    examples with the same buffer they visit them in the same order."""
    return lambda epoch: ds.shuffle(buffer, seed=epoch_seed(seed, epoch))


def balanced_epochs(
    per_class: Sequence[Callable[[tf.Tensor], tf.data.Dataset]], seed: int
) -> Callable[[tf.Tensor], tf.data.Dataset]:
    """One epoch function from per-class ones: each epoch draws the classes equally often
    (`balance_lib.balanced_stream`, seeded by `epoch_seed`)."""

    def epoch_examples(epoch):
        streams = [one_class(epoch) for one_class in per_class]
        return balance_lib.balanced_stream(streams, epoch_seed(seed, epoch))

    return epoch_examples


# The graph-level seed of the epoch function (see `epoch_stream`).
_EPOCH_GRAPH_SEED = 1


def epoch_stream(
    epoch_examples: Callable[[tf.Tensor], tf.data.Dataset],
    batch_size: int,
    epoch_batches: int,
    start: tuple[int, int] = (0, 0),
    until_epoch: int | None = None,
) -> tf.data.Dataset:
    """Training batches, epoch after epoch, numbered through the whole run.

    Epoch e is `epoch_examples(e)` (examples shuffled by `epoch_seed`) in `epoch_batches` full
    batches, so its batches depend on the seed and e alone: a run resumed at epoch e, batch b
    gets exactly the batches the uninterrupted run got from there, without replaying earlier
    epochs (only the first b batches of epoch e are made again, and dropped). The epochs are
    made one after another from the same cached examples (measured: no memory growth with the
    number of epochs; one dataset per epoch chained instead would copy in-memory pixels into
    each of them when tf.data optimises the graph).

    Args:
      epoch_examples: epoch number (an int64 tensor) -> that epoch's examples, one at a time.
      batch_size: examples per batch (full batches only).
      epoch_batches: batches per epoch.
      start: (epoch, batch) where the stream begins.
      until_epoch: the epoch before which it ends (default: the end of the start epoch).

    Returns:
      (global batch number, batch) pairs; batch b of epoch e is number e * epoch_batches + b.
    """
    first, skip = start

    def one_epoch(epoch):
        # tf.data combines an op's seed with the graph-level seed, and with a tensor op seed
        # fails if that graph seed is 0 (what keras.utils.set_random_seed(0) leaves). This
        # function's own graph gets a fixed one, so the order depends on `epoch_seed` alone.
        tf.random.set_seed(_EPOCH_GRAPH_SEED)
        batches = epoch_examples(epoch).batch(batch_size, drop_remainder=True)
        return batches.take(epoch_batches).enumerate(epoch * epoch_batches)

    epochs = tf.data.Dataset.range(first, first + 1 if until_epoch is None else until_epoch)
    return epochs.flat_map(one_epoch).skip(skip)


def _shuffled_files(
    examples: Examples, labels: tf.Tensor, decode: Callable, seed: int
) -> Callable[[tf.Tensor], tf.data.Dataset]:
    """Uncached training examples: each epoch shuffles the file names (a few bytes each), not
    the pixels, so the order is uniformly random and memory does not grow with the data."""
    names = tf.data.Dataset.from_tensor_slices((examples.paths, labels))

    def read(path, label):
        return tf.io.read_file(path), label

    shuffled_names = epoch_shuffled(names, len(examples), seed)

    def shuffled_files(epoch):
        ds = shuffled_names(epoch).map(read, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    return shuffled_files


def _epoch_examples(
    examples: Examples,
    image_size: int,
    training: bool,
    seed: int,
    resize_method: str,
    cache: str,
    memory_budget_mb: int,
    batch_size: int,
    sources: dict | None = None,
) -> Callable[[tf.Tensor | None], tf.data.Dataset]:
    """(uint8 image, int32 label) examples: read, decode+resize, cache; shuffled when training.

    Returns a function of the epoch number giving that epoch's examples (in the same order for
    evaluation). The decoded, cached examples are built once and shared by every epoch, and by
    every call given the same `sources` dict.
    """
    labels = tf.constant(examples.labels, tf.int32)
    # Uncached files are shuffled by name before reading (below), not as decoded pixels.
    shuffle_names = training and cache == "off" and examples.paths is not None

    # Named functions, not lambdas: AutoGraph mixes up several lambdas in one function.
    def resize_pixels(image, label):
        return resize(image, image_size, resize_method), label

    def decode(encoded, label):
        return decode_image(encoded, image_size, resize_method), label

    def look_up_label(index, encoded):
        return encoded, tf.gather(labels, index)

    # Decoding dominates an uncached epoch: every core. The output order stays the input's
    # (tf.data's default), so a seed gives the same batches in every run.
    if shuffle_names:
        return _shuffled_files(examples, labels, decode, seed)

    def decoded() -> tf.data.Dataset:
        scanned = examples.decoded_at(image_size, resize_method)
        if scanned is not None:
            # Decoded and resized by the up-front scan, the same way: already in memory.
            return tf.data.Dataset.from_tensor_slices((scanned, labels))
        if examples.pixels is not None:
            ds = tf.data.Dataset.from_tensor_slices((examples.pixels, labels))
            ds = ds.map(resize_pixels, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = encoded_images(examples).map(look_up_label)
            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        return _cached(ds, cache)

    if sources is None:
        ds = decoded()
    else:
        key = (id(examples), image_size, resize_method, cache)
        if key not in sources:
            # The Examples object is kept with its dataset so that its id is never reused.
            sources[key] = (examples, decoded())
        ds = sources[key][1]
    if not training:
        return lambda epoch: ds
    # Shuffle before batching so every batch mixes classes.
    buffer = training_shuffle_buffer(examples, image_size, cache, memory_budget_mb, batch_size)
    return epoch_shuffled(ds, buffer, seed)


def _cached(ds: tf.data.Dataset, cache: str) -> tf.data.Dataset:
    """Decoded, resized pixels cached: later epochs skip reading and decoding entirely."""
    if cache == "memory":
        return ds.cache()
    if cache == "off":
        return ds
    # A file cache when the split would not fit in memory (`caches.cache_plan`), in groups of
    # examples: until the file is complete TF's writer keeps an index entry per cached tensor
    # in memory (`caches.DISK_GROUP`).
    return ds.batch(DISK_GROUP).cache(cache).unbatch()


def _evaluation_batches(ds: tf.data.Dataset, batch_size: int, num_classes: int):
    """Evaluation examples -> batches, labels one-hot when `num_classes`, prefetched."""
    ds = ds.batch(batch_size)
    if num_classes:

        def one_hot(images, y):
            return augment_lib.finish_batch(images, y, num_classes)

        ds = ds.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def build_dataset(
    examples: Examples,
    image_size: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Sequence[str] = (),
    resize_method: str = "resize",
    cache: str = "memory",
    memory_budget_mb: int = 1024,
    num_classes: int = 0,
    class_weights: np.ndarray | None = None,
    resample: str = "none",
    start: tuple[int, int] = (0, 0),
    until_epoch: int | None = None,
    epoch_batches: int | None = None,
    sources: dict | None = None,
) -> tf.data.Dataset:
    """The input pipeline: read, decode+resize, cache, shuffle, batch, augment, prefetch.

    Training batches come epoch after epoch from `start` until `until_epoch` (give fit
    steps_per_epoch); which examples form batch b of epoch e, and how they are augmented,
    depends on the seed, e and b alone (`epoch_stream`, `augment_lib.BatchSeeds`), so a resumed
    run continues exactly.

    Args:
      examples: what to read (undecodable files already dropped, see `scan_images`).
      image_size: output height and width.
      batch_size: the global batch size (a strategy splits it over replicas).
      training: shuffle every epoch, drop the last partial batch (static shapes), augment.
      seed: shuffling and augmentation seed.
      augment: augmentation names (see augment_lib.AUGMENTATIONS); only used when training.
        mixup and cutmix need `num_classes`.
      resize_method: "resize", "crop" or "pad" (see `resize`).
      cache: "memory", "off", or a file path prefix for an on-disk cache (see `caches.cache_plan`).
      memory_budget_mb: bounds the shuffle buffer when the pixels are not cached in memory.
      num_classes: > 0: one-hot float32 labels of this width (what the trainers' loss takes);
        0: int32 labels.
      class_weights: per-class weights (`balance_lib.class_weights`) for training batches, which
        then carry a third element, the per-example sample weight. Needs `num_classes`.
      resample: "balanced": training draws every class equally often from one stream per class
        (`balance_lib.balanced_stream`).
      start: training only: (epoch, batch) of the run where the stream begins.
      until_epoch: training only: the epoch before which it ends (default: start's epoch + 1).
      epoch_batches: training only: batches per epoch (default: all full batches of examples).
      sources: a dict shared by several calls over the same examples (say one per training
        phase) so they share one decode and cache instead of each filling its own.

    Returns:
      A dataset of (uint8 [B, S, S, 3], labels) or (images, labels, float32 weights [B]).

    Raises:
      UserError: training on fewer examples than one batch.
    """
    mixing = [a for a in augment if a in augment_lib.MIXING] if training else []
    if (mixing or class_weights is not None) and not num_classes:
        raise ValueError("mixup, cutmix and class weights need one-hot labels (num_classes)")
    if training and len(examples) < batch_size:
        raise UserError(
            f"{examples.origin!r} has {len(examples)} training examples, fewer than one batch of "
            f"data.global_batch_size={batch_size}; lower the batch size"
        )
    by_epoch = functools.partial(
        _epoch_examples,
        image_size=image_size,
        training=training,
        seed=seed,
        resize_method=resize_method,
        memory_budget_mb=memory_budget_mb,
        batch_size=batch_size,
        sources=sources,
    )
    if not training:
        return _evaluation_batches(by_epoch(examples, cache=cache)(None), batch_size, num_classes)
    if resample == "balanced":
        # Class-balanced batches for an imbalanced split: one stream per class (each cached
        # and shuffled on its own) repeating within the epoch, drawn with equal probability.
        # Rare classes' images come round more often than common ones'.
        # (Record sources are read once per class to fill the caches.)
        per_class = [
            by_epoch(
                examples.take(np.flatnonzero(examples.labels == c)),
                cache=cache if cache in ("memory", "off") else f"{cache}-class{c}",
            )
            for c in np.flatnonzero(examples.counts())
        ]
        epoch_examples = balanced_epochs(per_class, seed)
    else:
        epoch_examples = by_epoch(examples, cache=cache)
    ds = epoch_stream(
        epoch_examples, batch_size, epoch_batches or len(examples) // batch_size, start, until_epoch
    )
    ds = _finish_training_batches(ds, augment, mixing, seed, num_classes, class_weights)
    # Overlap input work with the training step.
    return ds.prefetch(tf.data.AUTOTUNE)


def _finish_training_batches(
    ds: tf.data.Dataset,
    augment: Sequence[str],
    mixing: Sequence[str],
    seed: int,
    num_classes: int,
    class_weights: np.ndarray | None,
) -> tf.data.Dataset:
    """Numbered batches -> augmented batches with one-hot (mixed) labels and weights."""
    # Everything random from here on draws from the batch's number (`augment_lib.BatchSeeds`).
    seeds = augment_lib.BatchSeeds(seed)
    augmenter = augment_lib.build_augmenter(augment, seeds)
    crop = "crop" in augment
    mixer = augment_lib.build_mixer(mixing, seeds)

    @tf.autograph.experimental.do_not_convert  # see decode.py
    def finish_batch(number, batch):
        images, y = batch
        seeds.start(number)
        if augmenter is not None or crop:
            # Batch-level augmentation: one vectorised call per batch instead of one per image.
            augmented = tf.cast(images, tf.float32)
            if crop:
                augmented = augment_lib.random_resized_crop(augmented, seeds)
            if augmenter is not None:
                augmented = augmenter(augmented)
            images = tf.cast(tf.clip_by_value(augmented, 0, 255), tf.uint8)
        if not num_classes:
            return images, y
        # One-hot labels (soft after mixing) and per-example weights.
        return augment_lib.finish_batch(images, y, num_classes, class_weights, mixer)

    return ds.map(finish_batch, num_parallel_calls=tf.data.AUTOTUNE)
