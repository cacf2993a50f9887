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
from sft_tf.distribute import workers
from sft_tf.evaluation import metrics
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
        if not workers.single_replica(model.distribute_strategy):
            # Keras's predict loop spreads the batches over the replicas.
            shown = _ShowProgress(progress)
            features = pooled.predict(dataset, verbose=0, callbacks=[shown])[0]
            return np.asarray(features, np.float32)
        # One replica: the model's shared call, traced once for every batch size and every
        # split (predict traces a new function per model, and again for a short last batch).
        # The frozen base is in inference mode there, as in phase 1's fit; the dataset's
        # prefetch reads the next batch while this one runs.
        call = metrics.inference_function(pooled)
        shown = progress if progress.total else None  # as _ShowProgress does
        features = metrics.collect_predictions(lambda x: call(x)[0], dataset, shown)[0]
        return features.astype(np.float32, copy=False)


_POOLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pooled_model(model: keras.Model) -> keras.Model:
    """`model` from its input to [the pooled features, its probabilities]: one per classifier,
    so every split's feature pass shares its traced call, and so do `model`'s own later
    evaluations (`metrics.share_inference`). The head adds a few thousand multiply-adds per
    image to the pass; a second trace of the whole network cost ~1 s."""
    pooled = _POOLED.get(model)
    if pooled is None:
        outputs = [model.get_layer(POOL_LAYER).output, *model.outputs]
        pooled = keras.Model(model.inputs, outputs)
        _POOLED[model] = pooled
        metrics.share_inference(model, pooled, 1)
    return pooled


class _ShowProgress(keras.callbacks.Callback):
    """Feeds Keras's predict loop's batch count to a `Progress`."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def on_predict_batch_end(self, batch, logs=None):
        if self.progress.total:
            self.progress.update(batch + 1)


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
        # Same seeds and buffer as the image pipeline's shuffle: the same order of examples.
        return lambda epoch: ds.shuffle(len(y), seed=pipeline.epoch_seed(seed, epoch))

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


def should_cache(mode: str, augment: list[str] | tuple[str, ...], multi_worker: bool) -> bool:
    """Whether phase 1 trains on cached features (`phase1.cache_features`).

    "auto" caches when nothing is augmented (augmented images differ every epoch, so their
    features cannot be reused) and on a single worker (each worker would need its own shard).
    """
    if mode == "on":
        return True
    return mode == "auto" and not augment and not multi_worker
