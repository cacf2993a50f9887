"""The runtime: distribution strategy, precision policy and compile options, chosen per device
before any model is built.
"""

from __future__ import annotations

import tensorflow as tf

from sft_tf.distribute import strategy as strategy_lib
from sft_tf.log import say


def build_runtime(config) -> tuple[tf.distribute.Strategy, dict]:
    """The strategy, precision policy and compile options; runs before any model is built."""
    r = config.runtime
    if r.deterministic:
        # Process-wide, and before any op runs (the CLI's multi-worker set-up aside).
        tf.config.experimental.enable_op_determinism()
    strategy = strategy_lib.build_strategy(r.strategy, r.tpu)
    per_replica = strategy_lib.per_replica_batch_size(config.data.global_batch_size, strategy)
    policy = strategy_lib.resolve_precision(r.precision, strategy)
    # Before the model: each layer takes the policy that is current when it is built.
    strategy_lib.set_precision(policy)
    options = {
        "jit_compile": strategy_lib.resolve_jit_compile(r.jit_compile, strategy),
        "steps_per_execution": strategy_lib.resolve_steps_per_execution(
            r.steps_per_execution, strategy
        ),
    }
    say(
        f"Global batch {config.data.global_batch_size} = {per_replica} per replica x "
        f"{strategy.num_replicas_in_sync}; precision {policy}; "
        f"jit_compile={options['jit_compile']}; steps_per_execution="
        f"{options['steps_per_execution']}; learning-rate scaling {r.lr_scaling}"
        + ("; deterministic ops" if r.deterministic else "")
    )
    return strategy, options
