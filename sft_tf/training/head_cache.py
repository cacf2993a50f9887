"""The frozen-base feature cache for phase 1: run the base once per image, train the head alone.

With the base frozen and no augmentation, every epoch of phase 1 pushes the same images
through the same frozen base to get the same pooled features. Computing them once and training
the head (dropout + Dense) on them gives the same updates in a fraction of the time: the head
is a few thousand multiply-adds per image, the base millions.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from sft_tf.data import augment as augment_lib
from sft_tf.data import pipeline
from sft_tf.evaluation import inference
from sft_tf.log import Progress
from sft_tf.model.classifier import DROPOUT_LAYER, HEAD_LAYER, POOL_LAYER

# Layer names from classifier.build_classifier: the pooled features and what sits above them.
# The layers phase 1 trains on cached features: the same objects as in the whole model.
HEAD_LAYERS = (DROPOUT_LAYER, HEAD_LAYER)


def extract(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """Pooled base features of every example of `dataset`, in its order.

    Args:
      model: a classifier from `classifier.build_classifier` whose base is frozen.
      dataset: (uint8 images, labels) batches, unshuffled and unaugmented; the labels are
        ignored (the caller has them, in the same order).

    Returns:
      float32 features [N, D].
    """
    pooled = pooled_model(model)  # outputs: the features, the probabilities
    batches = max(int(dataset.cardinality()), 0)  # 0: unknown (no progress shown)
    with Progress("Pooled features from the frozen base", batches, "batches") as progress:
        # The frozen base in inference mode, as in phase 1's fit; on one replica through the
        # call shared with the test evaluations, traced once for every batch size and split.
        features = inference.outputs(pooled, dataset, progress)[0]
    return features.astype(np.float32, copy=False)


_POOLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pooled_model(model: keras.Model) -> keras.Model:
    """`model` from its input to [the pooled features, its probabilities]: one per classifier,
    so every split's feature pass shares its traced call, and so do `model`'s own later
    evaluations (`inference.share_inference`). The head adds a few thousand multiply-adds per
    image to the pass; a second trace of the whole network cost ~1 s."""
    pooled = _POOLED.get(model)
    if pooled is None:
        outputs = [model.get_layer(POOL_LAYER).output, *model.outputs]
        pooled = keras.Model(model.inputs, outputs)
        _POOLED[model] = pooled
        inference.share_inference(model, pooled, 1)
    return pooled


def head_of(model: keras.Model) -> keras.Model:
    """A model from pooled features to probabilities that shares the classifier's head layers.

    Training it trains the classifier's own head: the layers (and their weights) are the same
    objects, so nothing has to be copied back.
    """
    width = model.get_layer(POOL_LAYER).output.shape[-1]
    inputs = keras.Input((width,), name="features")
    x = inputs
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def feature_dataset(
    features: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    training: bool,
    seed: int = 0,
    num_classes: int = 0,
    class_weights: np.ndarray | None = None,
    resample: str = "none",
    epochs: int = 1,
) -> tf.data.Dataset:
    """Batches of (features, labels), shuffled and batched like `pipeline.build_dataset` does.

    Training batches are the same epoch stream (`pipeline.epoch_stream`, `epochs` epochs from the
    first) with the same per-epoch seeds and a full buffer, so an epoch visits the examples in
    the order the image pipeline over the same examples would. num_classes, class_weights and
    resample mean what they mean for `pipeline.build_dataset`.
    """

    def examples(x, y):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if not training:
            return lambda epoch: ds
        # The image pipeline's shuffle with a full buffer: the same order of examples.
        return pipeline.epoch_shuffled(ds, len(y), seed)

    if training and resample == "balanced":
        per_class = [
            examples(features[labels == c], labels[labels == c]) for c in np.unique(labels)
        ]
        epoch_examples = pipeline.balanced_epochs(per_class, seed)
    else:
        epoch_examples = examples(features, labels)
    if training:
        ds = pipeline.epoch_stream(
            epoch_examples, batch_size, len(labels) // batch_size, until_epoch=epochs
        )
        ds = ds.map(lambda number, batch: batch)
    else:
        ds = epoch_examples(None).batch(batch_size)
    if num_classes:
        weights = class_weights if training else None

        def finish(x, y):
            return augment_lib.finish_batch(x, y, num_classes, weights)

        ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def why_not(mode: str, augment: list[str] | tuple[str, ...], multi_worker: bool) -> str | None:
    """Why phase 1 should not train on cached features (None: it can); `cache_choice.decide`
    makes the choice.

    Augmented images differ every epoch, so their features cannot be reused. Several workers
    could each cache their own shard's features, but `auto` leaves that to `on`: each worker
    would run the frozen base over its shard before its first step.
    """
    if augment:
        return (
            f"data.augment has {', '.join(augment)}: augmented images differ every epoch, so "
            "their features cannot be reused"
        )
    if multi_worker and mode == "auto":
        return "several workers (set phase1.cache_features=on to cache each worker's shard)"
    return None
