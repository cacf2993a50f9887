"""Whether phase 2 trains on cached boundary activations, and its inputs when it does.

The pieces are in `model.cut` (where to cut, the two models) and `training.frozen_cache`
(storage and batches); this module applies `config.phase2.cache_frozen` to a run.
"""

from __future__ import annotations

import keras
import ml_collections
import tensorflow as tf

from sft_tf.data import augment as augment_lib
from sft_tf.data import caches
from sft_tf.data.examples import Examples
from sft_tf.distribute import workers
from sft_tf.log import say
from sft_tf.model import cut as cut_lib
from sft_tf.model.classifier import get_base
from sft_tf.training import cache_choice, frozen_cache
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
    reason = frozen_cache.why_not(augment_lib.parse_augment(config.data.augment), index, below)
    without = "Phase 2 runs the whole base every step"
    if not cache_choice.decide("phase2.cache_frozen", p2.cache_frozen, reason, without):
        return None
    cut = cut_lib.cut_classifier(model, index, p2.batchnorm)
    workers.allow_multi_worker_fit(cut.trainee, strategy)  # as the whole model is
    return cut


def inputs(
    config: ml_collections.ConfigDict,
    cut: cut_lib.Cut,
    train: Examples,
    validation,
    decoded: tf.data.Dataset | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple:
    """(training stream, validation batches or None) of boundary activations: the stream
    takes ((epoch, step), until_epoch) like `inputs.train_input`'s. decoded: the training
    pipeline's decoded pixels of `train` (`Pipelines.decoded_pixels`), to read, not decode.

    Several workers reading files: each worker caches and reads only its own shard, as its
    image pipeline would (`workers.distribute_by_file`); in-memory data: every worker caches the
    whole split and keeps its part of each batch, as with pixels.
    """
    d, size = config.data, config.model.image_size
    variants = 2 if "flip" in augment_lib.parse_augment(d.augment) else 1
    data = frozen_cache.Inputs(size, d.resize_method, d.global_batch_size)
    per_image = frozen_cache.per_image_bytes(cut)
    n_val = len(validation) if validation is not None else 0
    size_mb = (len(train) * variants + n_val) * per_image / 2**20
    storage = frozen_cache.storage_for(size_mb, d.cache, d.cache_memory_mb)
    root = caches.cache_root(d.cache_dir)
    val = None
    if validation is not None:
        val_store = frozen_cache.build_store(cut, validation, 1, data, storage, root, "validation")
        val = frozen_cache.evaluation_batches(
            val_store, d.global_batch_size, len(train.class_names)
        )
    several = strategy is not None and workers.input_pipelines(strategy) > 1
    if several and train.pixels is None:
        return _per_worker(config, cut, train, variants, storage, root, strategy), val
    store = frozen_cache.build_store(cut, train, variants, data, storage, root, "training", decoded)
    stream = _stream(config, store, train, d.global_batch_size, None, sample_weights(config, train))
    if several:
        return (lambda start, until: workers.shard_by_data(stream(start, until))), val
    return stream, val


def _stream(config, store, examples: Examples, batch: int, epoch_batches: int | None, weights):
    """The image pipeline's training batches of `examples` (a split or one worker's shard),
    as activations: the same shuffle buffer (its pixel cache decides it), weights of the
    whole split."""
    d, size = config.data, config.model.image_size
    pixel_cache = caches.cache_mode(examples, size, d.cache, d.cache_memory_mb)

    def buffer(members: Examples) -> int:
        return caches.training_shuffle_buffer(members, size, pixel_cache, d.cache_memory_mb, batch)

    return frozen_cache.training_stream(
        store,
        examples,
        batch,
        config.seed,
        buffer,
        len(examples.class_names),
        weights,
        d.resample,
        epoch_batches,
    )


def _per_worker(config, cut, train: Examples, variants: int, storage: str, root: str, strategy):
    """((epoch, step), until) -> this worker's shard of activations, distributed like the
    image pipeline's shards; each shard's activations are computed once, on its worker."""
    d = config.data
    weights = sample_weights(config, train)  # of the whole split, as the image pipeline's
    stores: dict = {}

    def shard_stream(indices, batch, epoch_batches, shard_start, until):
        key = tuple(int(i) for i in indices)
        if key not in stores:
            shard = train.take(indices)
            data = frozen_cache.Inputs(config.model.image_size, d.resize_method, batch)
            store = frozen_cache.build_store(cut, shard, variants, data, storage, root, "shard")
            stores[key] = (shard, store)
        shard, store = stores[key]
        return _stream(config, store, shard, batch, epoch_batches, weights)(shard_start, until)

    def stream(start: tuple[int, int], until: int):
        return workers.distribute_by_file(
            strategy,
            lambda indices, batch, epoch_batches, shard_start: shard_stream(
                indices, batch, epoch_batches, shard_start, until
            ),
            len(train),
            d.global_batch_size,
            log=say,
            start=start,
        )

    return stream
