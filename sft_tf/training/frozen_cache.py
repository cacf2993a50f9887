"""Phase 2 on cached activations: the frozen part of the base runs once per image, not per step.

`model.cut` splits the classifier at the first opened block. Here the lower part's outputs
(the boundary activations) are computed once for every training and validation image and
kept, and phase 2 fits the trainee (opened blocks + head) on them. It is exact, not an
approximation:

- the trainee gets the batches the image pipeline would give it, in the same order: the same
  shuffle (seed, buffer size, element count) of the same examples, the same epoch stream;
- with `flip`, the only augmentation whose results can be listed, each image is cached as is
  and mirrored, and each batch takes, image by image, the variant the image pipeline's flip
  would have made: the same Keras RandomFlip with the same batch seeds, run on a two-pixel probe.

Storage follows the decoded-pixel cache's policy (`data.cache`, `data.cache_memory_mb`,
`data.cache_dir`): in memory when the activations fit the budget, else on disk as a
`tf.data.Dataset.save` folder named by everything the activations depend on (the lower part's
weights, the images, the variants), so an interrupted run reuses it. Disk copies keep the
compute dtype: see `DISK_DTYPE`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from sft_tf.data import augment as augment_lib
from sft_tf.data import caches, pipeline
from sft_tf.data.examples import Examples
from sft_tf.evaluation import inference
from sft_tf.log import Progress, say
from sft_tf.model.cut import Cut

MODES = ("auto", "on", "off")
# Augmentations whose every outcome can be cached: a flip has two.
CACHEABLE_AUGMENT = ("flip",)
# Disk copies keep the compute dtype (None). float16 would halve the file, but measured
# (1,500 Fashion-MNIST images, 3 epochs of the tiny MobileNetV2) the final weights moved by up
# to 53% relative from the float32 run's (test accuracy 0.5287 vs 0.5300): training amplifies
# any rounding, so a float16 copy is not the same training. Exactness wins over disk space.
DISK_DTYPE = None
# Images per computed chunk at most (bounds the memory of a chunk's pixels and activations).
CHUNK_MB = 128


def why_not(augment: list[str], index: int | None, training_below: list[str]) -> str | None:
    """Why phase 2 on cached activations would not train as phase 2 on images (None: it
    would); `cache_choice.decide` makes the choice."""
    if index is None:
        return "the whole base is open (phase2.unfreeze_blocks=-1): nothing below is frozen"
    other = [a for a in augment if a not in CACHEABLE_AUGMENT]
    if other:
        return (
            f"data.augment has {', '.join(other)}: only flip's outcomes can be cached "
            "(two per image); others change every epoch"
        )
    if training_below:
        return (
            f"phase2.batchnorm=train runs {training_below[0]} (below the first opened block) in "
            "training mode, so its output changes from step to step"
        )
    return None


@dataclasses.dataclass
class Store:
    """A split's boundary activations: `dataset` yields (variant, ..., label) in example order,
    each variant a tuple of the cut's tensors (as is, then mirrored when flipping)."""

    dataset: tf.data.Dataset
    variants: int
    where: str


def per_image_bytes(cut: Cut) -> int:
    return sum(int(np.prod(t.shape[1:])) * np.dtype(t.dtype).itemsize for t in cut.trainee.inputs)


def _key(cut: Cut, examples: Examples, variants: int, image_size: int, resize: str) -> str:
    digest = hashlib.sha256()
    for weight in cut.lower.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    digest.update(f"{variants}|{image_size}|{resize}|{tf.__version__}|{examples.origin}".encode())
    digest.update("\n".join(examples.names()).encode())
    return digest.hexdigest()[:20]


def _chunks(count: int, per_image: int, batch: int) -> list[tuple[int, int]]:
    size = max(batch, min(4096, CHUNK_MB * 2**20 // max(per_image, 1)))
    return [(lo, min(count, lo + size)) for lo in range(0, count, size)]


def _file_pixels(examples: Examples, lo: int, hi: int, data) -> tf.data.Dataset:
    """Batches of examples lo..hi, decoded from their files or records (read once per
    variant from an in-memory cache of the chunk)."""
    return pipeline.build_dataset(
        examples.take(np.arange(lo, hi)),
        data.image_size,
        data.batch_size,
        training=False,
        resize_method=data.resize_method,
        cache="memory",
    ).map(_images)


def _images(images, labels):
    return images


def _mirrored(images):
    return tf.reverse(images, axis=[2])  # what RandomFlip("horizontal") does


def _compute(cut: Cut, pixels: tf.data.Dataset, variants: int) -> list:
    """[variant][tensor] arrays of the lower part's outputs for batches of `pixels`.

    Through `inference.outputs`: where it runs the model's shared call, one trace serves
    both variants and every batch size (Keras's predict would trace again per variant's short
    last batch); each of several workers computes its own shard.
    """
    return [
        inference.outputs(cut.lower, pixels.map(_mirrored) if variant else pixels)
        for variant in range(variants)
    ]


def _size(mb: float) -> str:
    return f"{mb * 1024:,.0f} KB" if mb < 1 else f"{mb:,.1f} MB"


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What reading images for the lower part needs (from config.data and config.model)."""

    image_size: int
    resize_method: str
    batch_size: int


def build_store(
    cut: Cut,
    examples: Examples,
    variants: int,
    data: Inputs,
    storage: str,
    root: str,
    label: str,
    decoded: tf.data.Dataset | None = None,
) -> Store:
    """Computes (or on disk, finds) the boundary activations of `examples`.

    storage: "memory" or "disk" (see `storage_for`); root: the disk cache's folder.
    decoded: the split's decoded pixels as the training pipeline caches them ((image, label)
    in example order), read instead of decoding the files again; memory storage only.
    """
    per_image = per_image_bytes(cut) * variants
    size_mb = len(examples) * per_image / 2**20
    shapes = " + ".join("x".join(map(str, t.shape[1:])) for t in cut.trainee.inputs)
    chunks = _chunks(len(examples), per_image, data.batch_size)
    if storage == "memory":
        say(
            f"Phase 2 cache, {label}: {len(examples):,} images x {variants} variant(s) of "
            f"{shapes} at {cut.boundary} = {_size(size_mb)} in memory"
        )
        if decoded is not None:  # one pass per variant over the training pipeline's cache
            pixels = decoded.map(_images).batch(data.batch_size).prefetch(tf.data.AUTOTUNE)
            elements = (*(tuple(v) for v in _compute(cut, pixels, variants)), examples.labels)
            return Store(tf.data.Dataset.from_tensor_slices(elements), variants, "memory")
        arrays = [
            [np.empty((len(examples), *t.shape[1:]), t.dtype) for t in cut.trainee.inputs]
            for _ in range(variants)
        ]
        with Progress(f"Phase 2 cache, {label}", len(examples)) as progress:
            for lo, hi in chunks:
                computed = _compute(cut, _file_pixels(examples, lo, hi, data), variants)
                for v, tensors in enumerate(computed):
                    for i, values in enumerate(tensors):
                        arrays[v][i][lo:hi] = values
                progress.update(hi)
        elements = (*tuple(tuple(a) for a in arrays), examples.labels)
        return Store(tf.data.Dataset.from_tensor_slices(elements), variants, "memory")
    folder = os.path.join(
        root,
        "phase2",
        _key(cut, examples, variants, data.image_size, data.resize_method),
    )
    if not tf.io.gfile.exists(folder):
        say(
            f"Phase 2 cache, {label}: {len(examples):,} images x {variants} variant(s) of "
            f"{shapes} at {cut.boundary} = {_size(size_mb)} on disk in {folder}"
        )
        _write(cut, examples, variants, data, chunks, folder, label)
    else:
        say(f"Phase 2 cache, {label}: reusing {folder}")
    parts = sorted(tf.io.gfile.listdir(folder))
    ds = tf.data.Dataset.load(os.path.join(folder, parts[0]))
    for part in parts[1:]:
        ds = ds.concatenate(tf.data.Dataset.load(os.path.join(folder, part)))
    labels = tf.data.Dataset.from_tensor_slices(examples.labels)
    ds = tf.data.Dataset.zip(ds, labels).map(lambda variants, y: (*variants, y))
    return Store(ds, variants, folder)


def _write(cut, examples, variants, data, chunks, folder: str, label: str) -> None:
    """Writes the chunks as tf.data save folders, then moves the whole into place (a crash
    leaves only a temporary folder, never a half cache that looks complete)."""
    temporary = f"{folder}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    with Progress(f"Phase 2 cache, {label}", len(examples)) as progress:
        for number, (lo, hi) in enumerate(chunks):
            computed = _compute(cut, _file_pixels(examples, lo, hi, data), variants)
            if DISK_DTYPE is not None:
                computed = [[a.astype(DISK_DTYPE) for a in v] for v in computed]
            part = tf.data.Dataset.from_tensor_slices(tuple(tuple(v) for v in computed))
            part.save(os.path.join(temporary, f"part-{number:05d}"))
            progress.update(hi)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    os.replace(temporary, folder)


def storage_for(size_mb: float, mode: str, budget_mb: int) -> str:
    """ "memory" or "disk" for `size_mb` of activations under the pixel cache's `data.cache`
    (its "off" asks nothing of this cache, which is the point of the run: as "auto")."""
    return caches.resolve_cache(size_mb, "auto" if mode == "off" else mode, budget_mb)


@dataclasses.dataclass
class _Flip:
    """The image pipeline's flip layer and the seeds it draws from (`_choose`)."""

    seeds: augment_lib.BatchSeeds
    layer: object


def _choose(variants: int, number: tf.Tensor, elements: tuple, flip: _Flip) -> tuple:
    """Each image's variant: the mirrored one where the image pipeline's flip would flip."""
    if variants == 1:
        return elements[0]
    as_is, mirrored = elements
    batch = tf.shape(as_is[0])[0]
    flip.seeds.start(number)
    # Pixel 0 of a [0, 1] probe reads 1 after a horizontal flip.
    probe = tf.tile(tf.constant([[[[0.0], [1.0]]]]), [batch, 1, 1, 1])
    flipped = flip.layer(probe)[:, 0, 0, 0] > 0.5
    return tuple(
        tf.where(tf.reshape(flipped, [-1] + [1] * (len(a.shape) - 1)), m, a)
        for a, m in zip(as_is, mirrored)
    )


def training_stream(
    store: Store,
    examples: Examples,
    batch_size: int,
    seed: int,
    buffer: Callable[[Examples], int],
    num_classes: int,
    class_weights: np.ndarray | None,
    resample: str,
    epoch_batches: int | None = None,
) -> Callable[[tuple[int, int], int], tf.data.Dataset]:
    """((epoch, step), until_epoch) -> training batches of (activations, one-hot labels[,
    weights]): the image pipeline's batches (`pipeline.build_dataset`), as activations.

    buffer: the image pipeline's shuffle buffer for a split (or one class of it).
    epoch_batches: batches per epoch (default: all full batches of `examples`).
    """
    epoch_batches = epoch_batches or len(examples) // batch_size
    source = store.dataset

    if resample == "balanced":
        per_class = []
        for c in np.flatnonzero(examples.counts()):
            members = examples.take(np.flatnonzero(examples.labels == c))
            one = source.filter(lambda *e, c=int(c): tf.equal(tf.cast(e[-1], tf.int64), c))
            per_class.append(pipeline.epoch_shuffled(one, buffer(members), seed))
        epoch_examples = pipeline.balanced_epochs(per_class, seed)
    else:
        epoch_examples = pipeline.epoch_shuffled(source, buffer(examples), seed)
    seeds = augment_lib.BatchSeeds(seed)
    flip = _Flip(seeds, augment_lib.build_augmenter(["flip"], seeds))

    def finish(number, batch):
        *elements, y = batch
        x = _choose(store.variants, number, tuple(elements), flip)
        x = x[0] if len(x) == 1 else x
        return augment_lib.finish_batch(x, y, num_classes, class_weights)

    def stream(start: tuple[int, int], until: int) -> tf.data.Dataset:
        ds = pipeline.epoch_stream(epoch_examples, batch_size, epoch_batches, start, until)
        return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    return stream


def evaluation_batches(store: Store, batch_size: int, num_classes: int) -> tf.data.Dataset:
    """Validation batches of (activations as is, one-hot labels), in example order."""

    def finish(*batch):
        *elements, y = batch
        x = elements[0]
        return augment_lib.finish_batch(x[0] if len(x) == 1 else x, y, num_classes)

    return store.dataset.batch(batch_size).map(finish).prefetch(tf.data.AUTOTUNE)
