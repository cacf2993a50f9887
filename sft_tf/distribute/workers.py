"""Several workers (MultiWorkerMirroredStrategy): who is chief, where each writes, and how the
training data is split between them.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf.distribute.strategy import per_replica_batch_size
from sft_tf.errors import UserError


def worker_task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """(task type, task id) of this process in a multi-worker cluster; (None, 0) otherwise."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, 0
    resolver = strategy.cluster_resolver
    return resolver.task_type, resolver.task_id or 0


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True in the one process that writes results: the chief task, or worker 0 without one."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = worker_task(strategy)
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )


def output_dir(workdir: str | Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes: the workdir on the chief, a scratch dir inside it elsewhere.

    Every worker runs the same saving code, because reading synchronised variables to save
    them can be a collective that all workers must join; only the chief's copy is kept. The
    scratch dir is removed by `remove_scratch`.
    """
    workdir = Path(workdir)
    if is_chief(strategy):
        return workdir
    task_type, task_id = worker_task(strategy)
    return workdir / f"workertemp_{task_type}_{task_id}"


def remove_scratch(path: str | Path, strategy: tf.distribute.Strategy) -> None:
    """Deletes a non-chief's scratch dir (never the chief's workdir)."""
    if not is_chief(strategy):
        shutil.rmtree(path, ignore_errors=True)


def input_pipelines(strategy: tf.distribute.Strategy) -> int:
    """How many input pipelines feed the replicas: one per multi-worker process, else one.

    TPU pod slices (several hosts) count as one here: Keras's own dataset distribution
    handles them, and the multi-worker paths in this package are tested only on CPU workers.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        cluster = strategy.cluster_resolver.cluster_spec().as_dict()
        return max(1, len(cluster.get("chief", ())) + len(cluster.get("worker", ())))
    return 1


def local_inference(strategy: tf.distribute.Strategy) -> bool:
    """True where this process computes a model's outputs for all of its images itself, with a
    plain call: on one replica, and on each of several workers (where Keras's predict would
    return only this worker's share of the examples). False where Keras's predict spreads the
    batches over this process's replicas (Mirrored on several GPUs, TPU)."""
    return input_pipelines(strategy) > 1 or single_replica(strategy)


def single_replica(strategy: tf.distribute.Strategy) -> bool:
    """One device, not a TPU: a plain call of the model runs where its variables are."""
    return strategy.num_replicas_in_sync == 1 and not isinstance(
        strategy, tf.distribute.TPUStrategy | tf.distribute.experimental.TPUStrategy
    )


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Marks `dataset` to be split over workers by element when Keras distributes it.

    Every worker builds the whole pipeline and keeps only its part of each global batch: the
    only choice for in-memory arrays, which have no files to divide. (AutoShardPolicy.OFF is no
    way out for evaluation: measured here, it hands a replica an empty slice of the last
    partial batch and MobileNetV2's first BatchNorm fails on the [0, 32, 32, 3] input.)
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def file_shard_steps(
    strategy: tf.distribute.Strategy, num_examples: int, global_batch_size: int
) -> int:
    """Steps per epoch when each worker reads its own shard (`distribute_by_file`).

    Raises:
      UserError: a worker's shard holds less than one batch.
    """
    pipelines = input_pipelines(strategy)
    per_pipeline = global_batch_size // pipelines
    steps = (num_examples // pipelines) // per_pipeline
    if steps < 1:
        raise UserError(
            f"{num_examples} training examples over {pipelines} workers leave fewer than one "
            f"batch of {per_pipeline} per worker; lower config.data.global_batch_size"
        )
    return steps


def distribute_by_file(
    strategy: tf.distribute.Strategy,
    make_dataset: Callable[[np.ndarray, int, int, tuple[int, int]], tf.data.Dataset],
    num_examples: int,
    global_batch_size: int,
    log: Callable[[str], None] = print,
    start: tuple[int, int] = (0, 0),
) -> tf.distribute.DistributedDataset:
    """One input pipeline per worker, each reading only its own files.

    Worker i of n reads example indices i, i+n, i+2n, ... (files are listed in class order, so
    every shard has every class). Every worker's epoch is cut to the same number of batches
    and `fit` must be given steps_per_epoch=`file_shard_steps(...)`: shards differ in size by one,
    and a worker whose pipeline ran dry would wait forever for the others' all-reduce; and
    Keras would count per-replica batches as steps when a worker has several replicas.

    Args:
      strategy: the strategy to distribute over.
      make_dataset: (example indices, per-replica batch size, batches per epoch, (epoch,
        batches to skip)) -> the training stream over those examples from there (see
        `data.build_dataset`), each epoch cut to the given number of batches so that every
        worker's epochs end where Keras's do.
      num_examples: size of the whole training split.
      global_batch_size: the batch summed over all replicas.
      log: where to say which shard this worker reads.
      start: (epoch, step) of the run to begin at, in Keras steps.

    Returns:
      The distributed dataset.
    """
    per_replica = per_replica_batch_size(global_batch_size, strategy)
    per_pipeline = global_batch_size // input_pipelines(strategy)
    steps = file_shard_steps(strategy, num_examples, global_batch_size)
    # A step takes one per-replica batch from this worker's pipeline for each local replica.
    local_replicas = per_pipeline // per_replica

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        indices = np.arange(context.input_pipeline_id, num_examples, context.num_input_pipelines)
        digest = hashlib.sha256(str(indices.tolist()).encode()).hexdigest()[:12]
        log(
            f"Input pipeline {context.input_pipeline_id} of {context.num_input_pipelines}: "
            f"reads {len(indices)} of {num_examples} training examples "
            f"(indices {context.input_pipeline_id}::{context.num_input_pipelines}, "
            f"sha256 {digest}), {steps} steps per epoch"
        )
        epoch, step = start
        return make_dataset(
            indices, per_replica, steps * local_replicas, (epoch, step * local_replicas)
        )

    return strategy.distribute_datasets_from_function(dataset_fn)


def weights_digest(weights: list) -> str:
    """A short sha256 of variable values: equal on every worker whose replicas stayed in sync."""
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()[:16]


def allow_multi_worker_fit(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Works around two Keras 3.15 bugs that stop `fit` under MultiWorkerMirroredStrategy.

    Both are in Keras's TF trainer and only bite with several workers (measured with the real
    2-process cluster in tests/scenarios/test_multi_worker.py); other strategies are left alone.

    1. Before the first epoch Keras takes one batch to build the model symbolically and, when
       every part is per-replica, averages it with `strategy.reduce`; CollectiveAllReduce
       cannot take the (images, labels) tuple ("Attempt to convert a value (PerReplica:...)").
       The batch only supplies shapes and dtypes, so Keras gets this worker's first part.
    2. After each step Keras averages the per-replica logs with `reduce("MEAN", v, axis=0)`,
       which fails on scalar losses and metrics ("Invalid reduction dimension 0 for input
       with 0 dimensions"); the train and test steps here return them as shape [1] so that
       reduce averages over replicas and gives back a scalar.
    """
    if input_pipelines(strategy) == 1:
        return
    keras_build = model._maybe_symbolic_build
    keras_train_step, keras_test_step = model.train_step, model.test_step

    def build_from_local_batch(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches)
                )
                break
        return keras_build(data_batch=data_batch)

    def as_vectors(logs: dict) -> dict:
        return {k: tf.reshape(v, [1]) if v.shape.rank == 0 else v for k, v in logs.items()}

    model._maybe_symbolic_build = build_from_local_batch
    model.train_step = lambda data: as_vectors(keras_train_step(data))
    model.test_step = lambda data: as_vectors(keras_test_step(data))
