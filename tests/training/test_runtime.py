"""sft_tf/training/runtime.py: config.runtime becomes the strategy, the Keras precision policy
(set before any model is built) and the compile options asked for, on this machine's two
logical CPUs (tests/conftest.py); what cannot run here is refused before anything is built."""

import inspect

import keras
import pytest
import tensorflow as tf

from sft_tf.errors import UserError
from sft_tf.training import runtime
from tests.helpers import fresh_python, tiny_config


@pytest.fixture(autouse=True)
def float32_afterwards():
    """build_runtime sets Keras's global policy; later tests build in float32 again."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_one_device_float32_and_keras_choices_by_default(capsys):
    strategy, options = runtime.build_runtime(tiny_config(runtime__strategy="one_device"))
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert keras.mixed_precision.global_policy().name == "float32"  # auto on CPU
    assert options == {"jit_compile": "auto", "steps_per_execution": 1}
    assert capsys.readouterr().out.endswith(
        "Global batch 8 = 8 per replica x 1; precision float32; jit_compile=auto; "
        "steps_per_execution=1; learning-rate scaling none\n"
    )


def test_mirrored_splits_the_global_batch_over_both_cpus(capsys):
    config = tiny_config(runtime__strategy="mirrored", runtime__lr_scaling="linear")
    config.runtime.jit_compile = "false"
    strategy, options = runtime.build_runtime(config)
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2
    assert options == {"jit_compile": False, "steps_per_execution": 1}
    assert "Global batch 8 = 4 per replica x 2; precision float32; jit_compile=False" in (
        capsys.readouterr().out
    )


def test_the_precision_asked_for_is_the_policy_models_are_built_in():
    config = tiny_config(runtime__strategy="one_device", runtime__precision="mixed_bfloat16")
    runtime.build_runtime(config)
    policy = keras.mixed_precision.global_policy()
    assert (policy.name, policy.compute_dtype, policy.variable_dtype) == (
        "mixed_bfloat16",
        "bfloat16",
        "float32",
    )
    assert keras.layers.Dense(2).compute_dtype == "bfloat16"


def test_xla_and_several_steps_per_call_on_one_device():
    config = tiny_config(runtime__strategy="one_device", runtime__jit_compile="true")
    config.runtime.steps_per_execution = 4
    _, options = runtime.build_runtime(config)
    assert options == {"jit_compile": True, "steps_per_execution": 4}


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "global_batch_size",
            7,
            "config.data.global_batch_size=7 does not split evenly over 2 replicas "
            "(MirroredStrategy); use a multiple of 2, e.g. 6 or 8",
        ),
        (
            "jit_compile",
            "true",
            "config.runtime.jit_compile=true fails under MirroredStrategy with 2 CPU replicas "
            "(XLA cannot reach the other replica's variables); use auto or false",
        ),
        (
            "steps_per_execution",
            2,
            "config.runtime.steps_per_execution=2 fails under MirroredStrategy with 2 replicas "
            "(a Keras 3.15 bug); unset it or use 1",
        ),
        (
            "precision",
            "float64",
            "config.runtime.precision='float64' is not one of auto, float32, mixed_float16, "
            "mixed_bfloat16",
        ),
    ],
)
def test_what_cannot_run_under_mirrored_is_refused_before_a_model_is_built(field, value, message):
    config = tiny_config(runtime__strategy="mirrored")
    section = config.data if field == "global_batch_size" else config.runtime
    section[field] = value
    with pytest.raises(UserError) as raised:
        runtime.build_runtime(config)
    assert str(raised.value) == message
    assert keras.mixed_precision.global_policy().name == "float32"


def _unseeded_random_op() -> str:
    """What an unseeded random op does: deterministic ops refuse to run one."""
    try:
        tf.random.uniform([1])
    except (RuntimeError, tf.errors.OpError) as e:
        return type(e).__name__ + ": " + str(e).splitlines()[0]
    return "ran"


@pytest.mark.slow  # a fresh process (op determinism is process-wide, there is no way back): ~8 s
def test_deterministic_turns_op_determinism_on():
    code = (
        "import tensorflow as tf\n"
        "from sft_tf.training import runtime\n"
        "from tests.helpers import tiny_config\n"
        f"{_source(_unseeded_random_op)}\n"
        "before = _unseeded_random_op()\n"
        "runtime.build_runtime(tiny_config(runtime__strategy='one_device', "
        "runtime__deterministic=True))\n"
        "print(before)\n"
        "print(_unseeded_random_op())\n"
    )
    result = fresh_python(code)
    assert result.returncode == 0, result.stderr
    *_, announced, before, after = result.stdout.splitlines()
    assert announced.endswith("learning-rate scaling none; deterministic ops")
    assert before == "ran"
    assert after.startswith("RuntimeError: Random ops require a seed to be set when determinism")


def _source(function) -> str:
    """A function's own code, to run it in the fresh process too."""
    return inspect.getsource(function)
