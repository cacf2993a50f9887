"""Training-batch transforms: augmentation, MixUp/CutMix, class weights, balanced resampling.

Everything here runs inside `tf.data` on whole batches (one vectorised call per batch, and
nothing that XLA would have to compile in the training step). The pieces are Keras
preprocessing layers where Keras has one; the random-resized crop samples its boxes here and
lets `tf.image.crop_and_resize` do the work, because Keras's RandomCrop takes one offset per
batch and returns a smaller image.

Class imbalance has two remedies, chosen in config: per-example weights from the training
split's class counts (`data.class_weighting`), carried as the batch's `sample_weight` (Keras's
`class_weight` argument does not work under distribution strategies and TPUs), or a balanced
stream of examples (`data.resample=balanced`): `tf.data` draws from one stream per class.

Randomness is a function of the seed and the batch's number in the run (`BatchSeeds`), not of a
counter that advances as batches are made: batch k is augmented the same way whichever order
parallel map calls finish in, and whether or not the run was stopped and resumed before it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from sft_tf.errors import UserError

# Per-image geometric and photometric augmentations, applied in this order of the list given.
IMAGE_AUGMENTATIONS = ("crop", "flip", "translate", "rotate", "zoom", "contrast", "randaugment")
# Augmentations that mix two images and their labels (need one-hot labels).
MIXING = ("mixup", "cutmix")
AUGMENTATIONS = IMAGE_AUGMENTATIONS + MIXING
# The random-resized crop keeps 50-100% of the image area at aspect ratios 3:4 to 4:3.
CROP_AREA = (0.5, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)


def parse_augment(text: str, field: str = "augment") -> list[str]:
    """Splits and checks a comma-separated augmentation list."""
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in AUGMENTATIONS]
    if unknown:
        raise UserError(
            f"{field}={text!r}: unknown {unknown}; choose from {', '.join(AUGMENTATIONS)}"
        )
    return names


class BatchSeeds(keras.random.SeedGenerator):
    """Seeds derived from (seed, batch number, draw) for Keras's random layers and our own ops.

    A Keras random layer draws its seeds from a SeedGenerator whose state variable advances with
    every draw. Inside a parallel `tf.data` map the draws of different batches race for that
    variable, and a resumed run starts it over, so neither the batch a draw lands in nor the
    augmentation after a resume is reproducible. Given this generator instead (as the layers'
    `generator`), the n-th draw while batch k is being built is the stateless seed
    [k, seed * 4096 + n]: the same in every run, however the map calls interleave.

    Call `start(batch_number)` at the top of the batch function, before any draw.
    """

    def __init__(self, seed: int):
        super().__init__(seed)
        self.base = int(seed) * 4096
        self.batch = None
        self.draws = 0

    def start(self, batch_number: tf.Tensor | int) -> None:
        self.batch = tf.cast(batch_number, tf.int64)
        self.draws = 0

    def next(self, ordered: bool = True) -> tf.Tensor:
        del ordered  # every seed is fresh: there is no state to advance
        if self.batch is None:
            raise RuntimeError("BatchSeeds.start(batch_number) must come before the first draw")
        # Draws are counted while the batch function is traced, once per call site.
        self.draws += 1
        return tf.stack([self.batch, tf.constant(self.base + self.draws, tf.int64)])

    def uniform(self, shape, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, self.next(), minval, maxval)


def build_augmenter(names: Sequence[str], seeds: BatchSeeds) -> keras.Sequential | None:
    """Keras preprocessing layers for the per-image augmentations in `names` (crop and mixing
    are separate), or None when there are none. Their randomness comes from `seeds`."""
    choices = {
        "flip": lambda: keras.layers.RandomFlip("horizontal"),
        "translate": lambda: keras.layers.RandomTranslation(0.1, 0.1),
        "rotate": lambda: keras.layers.RandomRotation(0.05),
        "zoom": lambda: keras.layers.RandomZoom(0.1),
        "contrast": lambda: keras.layers.RandomContrast(0.2),
        # Two random ops per image at moderate strength; value_range matches our 0..255 pixels.
        "randaugment": lambda: keras.layers.RandAugment(
            value_range=(0, 255), num_ops=2, factor=0.5
        ),
    }
    layers = [_seeded(choices[n](), seeds) for n in names if n in choices]
    return keras.Sequential(layers, name="augment") if layers else None


def _seeded(layer: keras.layers.Layer, seeds: BatchSeeds) -> keras.layers.Layer:
    # Keras's random preprocessing layers (RandAugment's inner layers included: it hands them
    # its own generator) draw every seed from `generator`.
    layer.generator = seeds
    return layer


def random_resized_crop(images: tf.Tensor, seeds: BatchSeeds) -> tf.Tensor:
    """Crops a random box from each image (its own area, aspect and place) and resizes it back.

    Args:
      images: float32 [B, H, W, C].
      seeds: the batch's seeds (`BatchSeeds`, started for this batch).

    Returns:
      float32 [B, H, W, C].
    """
    batch = tf.shape(images)[0]
    area = seeds.uniform([batch], *CROP_AREA)
    aspect = tf.exp(seeds.uniform([batch], *map(math.log, CROP_ASPECT)))
    # Box sides as fractions of the image; a side that would pass 1 is clipped to the image.
    height = tf.minimum(tf.sqrt(area / aspect), 1.0)
    width = tf.minimum(tf.sqrt(area * aspect), 1.0)
    top = seeds.uniform([batch]) * (1.0 - height)
    left = seeds.uniform([batch]) * (1.0 - width)
    boxes = tf.stack([top, left, top + height, left + width], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), tf.shape(images)[1:3])


def build_mixer(names: Sequence[str], seeds: BatchSeeds):
    """A function mixing a batch's images and one-hot labels, or None without mixup/cutmix.

    With both chosen, each batch gets one of the two at random (both are computed and one is
    selected: a branch-free graph, and the batch-level work is small next to a training step).
    Randomness comes from `seeds`, started for the batch by the caller.
    """
    layers = []
    if "mixup" in names:
        # alpha 0.2: the Beta(0.2, 0.2) mixing weights most ImageNet recipes use.
        layers.append(_seeded(keras.layers.MixUp(alpha=0.2), seeds))
    if "cutmix" in names:
        layers.append(_seeded(keras.layers.CutMix(factor=1.0), seeds))
    if not layers:
        return None

    def mix(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        outputs = [layer({"images": images, "labels": labels}) for layer in layers]
        if len(outputs) == 1:
            return outputs[0]["images"], outputs[0]["labels"]
        use_first = seeds.uniform([]) < 0.5
        return (
            tf.where(use_first, outputs[0]["images"], outputs[1]["images"]),
            tf.where(use_first, outputs[0]["labels"], outputs[1]["labels"]),
        )

    return mix


@tf.autograph.experimental.do_not_convert  # tf.cond only: see decode.py
def finish_batch(
    images: tf.Tensor,
    labels: tf.Tensor,
    num_classes: int,
    weights: np.ndarray | None = None,
    mixer=None,
) -> tuple:
    """One-hot labels, optional mixing, and the per-example weights of a batch.

    Args:
      images: uint8 [B, H, W, 3] (or any batch of model inputs when there is no mixer).
      labels: int [B] class ids, or multi-hot [B, C] (multi-label: used as they are).
      num_classes: width of the one-hot labels.
      weights: per-class weights (None: no sample weights).
      mixer: from `build_mixer`, or None.

    Returns:
      (images, float32 labels [B, C]) or (images, labels, float32 sample weights [B]). A mixed
      example's weight is its labels' mixture of the two classes' weights.
    """
    if labels.shape.rank == 2:
        one_hot = tf.cast(labels, tf.float32)
    else:
        one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    if mixer is not None:
        mixed, one_hot = mixer(tf.cast(images, tf.float32), one_hot)
        # Back to the pipeline's uint8 pixels (rounding moves a pixel by at most half a level).
        images = tf.cast(tf.clip_by_value(tf.round(mixed), 0, 255), tf.uint8)
    if weights is None:
        return images, one_hot
    return images, one_hot, tf.linalg.matvec(one_hot, tf.constant(weights, tf.float32))
