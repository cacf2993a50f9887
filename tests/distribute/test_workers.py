"""Who is chief, where each process writes, how data splits over workers (one process here;
tests/scenarios/test_multi_worker.py runs a real two-process cluster)."""

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.distribute import workers
from sft_tf.errors import UserError


def test_a_single_process_is_chief_writes_its_workdir_and_reads_one_pipeline(tmp_path):
    strategy = tf.distribute.get_strategy()
    assert workers.is_chief(strategy)
    assert workers.output_dir(tmp_path / "run", strategy) == tmp_path / "run"
    assert workers.input_pipelines(strategy) == 1
    workers.remove_scratch(tmp_path, strategy)  # never the chief's own workdir
    assert tmp_path.is_dir()


def test_file_shards_give_whole_batches_or_a_clear_error():
    strategy = tf.distribute.get_strategy()
    assert workers.file_shard_steps(strategy, num_examples=50, global_batch_size=8) == 6
    with pytest.raises(UserError, match="fewer than one batch of 8 per worker"):
        workers.file_shard_steps(strategy, num_examples=7, global_batch_size=8)


def test_weights_digest_tells_equal_weights_from_different_ones():
    a = [tf.Variable(np.arange(6, dtype=np.float32)), tf.Variable([1.0])]
    b = [tf.Variable(np.arange(6, dtype=np.float32)), tf.Variable([1.0])]
    assert workers.weights_digest(a) == workers.weights_digest(b)
    b[1].assign([1.5])
    assert workers.weights_digest(a) != workers.weights_digest(b)
