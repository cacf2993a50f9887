"""Whether phase 2 trains on cached boundary activations, and its inputs when it does.

The pieces are in `model.cut` (where to cut, the two models) and `training.frozen_cache`
(storage and batches); this module applies `config.phase2.cache_frozen` to a run.
"""

from __future__ import annotations

import keras
import ml_collections
import tensorflow as tf

from sft_tf.data import augment as augment_lib
from sft_tf.data import pipeline
from sft_tf.data.examples import Examples
from sft_tf.distribute import workers
from sft_tf.model import cut as cut_lib
from sft_tf.model.classifier import get_base
from sft_tf.training import frozen_cache
from sft_tf.training.inputs import sample_weights


def plan(
    config: ml_collections.ConfigDict,
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    opened: list[str],
) -> cut_lib.Cut | None:
    """The classifier cut for phase 2 on cached activations, or None to train it whole.

    Raises:
      UserError: phase2.cache_frozen=on where the cache would not give the same training.
    """
    p2 = config.phase2
    base = get_base(model)
    index = cut_lib.boundary_index(base, config.model.backbone, opened)
    below = [] if index is None else cut_lib.training_mode_below(base, index, p2.batchnorm)
    reason = frozen_cache.why_not(
        p2.cache_frozen,
        augment_lib.parse_augment(config.data.augment),
        index,
        below,
        workers.input_pipelines(strategy) > 1,
    )
    if not frozen_cache.decide(p2.cache_frozen, reason):
        return None
    return cut_lib.cut_classifier(model, index, p2.batchnorm)


def inputs(
    config: ml_collections.ConfigDict,
    cut: cut_lib.Cut,
    train: Examples,
    validation,
    decoded: tf.data.Dataset | None = None,
) -> tuple:
    """(training stream, validation batches or None) of boundary activations: the stream
    takes ((epoch, step), until_epoch) like `inputs.train_input`'s. decoded: the training
    pipeline's decoded pixels of `train` (`Pipelines.decoded_pixels`), to read, not decode."""
    d, size = config.data, config.model.image_size
    flip = "flip" in augment_lib.parse_augment(d.augment)
    data = frozen_cache.Inputs(size, d.resize_method, d.global_batch_size)
    splits = [(train, 2 if flip else 1, "training")]
    if validation is not None:
        splits.append((validation, 1, "validation"))
    per_image = frozen_cache.per_image_bytes(cut)
    size_mb = sum(len(s) * v * per_image for s, v, _ in splits) / 2**20
    storage = frozen_cache.storage_for(size_mb, d.cache, d.cache_memory_mb)
    root = frozen_cache.default_root(d.cache_dir)
    stores = [
        frozen_cache.build_store(cut, s, v, data, storage, root, n, decoded if s is train else None)
        for s, v, n in splits
    ]
    # The image pipeline's shuffle buffer (its pixel cache decides it): the same order.
    pixel_cache = pipeline.cache_mode(train, size, d.cache, d.cache_memory_mb)

    def buffer(examples: Examples) -> int:
        return pipeline.training_shuffle_buffer(
            examples, size, pixel_cache, d.cache_memory_mb, d.global_batch_size
        )

    stream = frozen_cache.training_stream(
        stores[0],
        train,
        d.global_batch_size,
        config.seed,
        buffer,
        len(train.class_names),
        sample_weights(config, train),
        d.resample,
    )
    val = None
    if validation is not None:
        val = frozen_cache.evaluation_batches(
            stores[1], d.global_batch_size, len(train.class_names)
        )
    return stream, val
