"""The phases' own decisions: the advice after a NaN loss, the run's epoch count."""

import keras

from sft_tf.training import phases
from tests.helpers import tiny_config


def test_the_console_counts_both_phases_epochs():
    assert phases.total_epochs(tiny_config(phase1__epochs=2, phase2__epochs=3)) == 5


def test_the_nan_hint_names_the_phase_rate_and_precision():
    config = tiny_config()
    hint = phases.diverged_hint(config, "phase2")
    assert hint.startswith(
        "phase2.learning_rate=0.0001 is likely too high: rerun the same command with "
        "--config.phase2.learning_rate=1e-05 --restart to train again from the start"
    )
    assert "precision" not in hint  # float32 here: nothing to switch off
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        hint = phases.diverged_hint(config, "phase1")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "--config.phase1.learning_rate=0.0001 --restart" in hint
    assert hint.endswith(
        "under mixed_bfloat16, --config.runtime.precision=float32 --restart may be the fix"
    )
