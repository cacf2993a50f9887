"""Where training runs: the tf.distribute strategy and the choices that depend on the device.

`build_strategy` picks the strategy (one device, Mirrored over GPUs or logical CPUs,
MultiWorkerMirrored from TF_CONFIG, TPU). The other functions answer the questions whose answer
depends on it: the per-replica batch, the precision policy, XLA, steps per execution, whether
this process is the chief (the one that writes results), and how input is split over workers.
Leaf module: it takes plain arguments, never the config.
"""

from __future__ import annotations

import glob
import os

import keras
import tensorflow as tf

from sft_tf.distribute import tf_config
from sft_tf.errors import UserError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
JIT_COMPILE = ("auto", "true", "false")
LR_SCALING = ("none", "linear")
# Linear scaling rule (Goyal et al. 2017): learning rates in configs are for this batch size.
LR_REFERENCE_BATCH = 256
# A TPU step on a small model is shorter than the host round trip that launches it.
TPU_STEPS_PER_EXECUTION = 32

# One strategy per kind per process. Two MirroredStrategy objects in one process number their
# collective ops from the same start, so the second model's all-reduce meets the first one's
# cached shapes ("Shape mismatch in the collective instance 100"); a TPU system is also
# initialised only once. pretrain -> train in one process (the demo) reuses the strategy.
_CACHE: dict[tuple[str, str], tf.distribute.Strategy] = {}


def _tpu_available() -> bool:
    # Cheap, local signals only: asking the GCE metadata server would hang off-cloud.
    return bool(
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or glob.glob("/dev/accel*")
        or glob.glob("/dev/vfio/[0-9]*")
    )


def _tpu_strategy(tpu: str) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    # OSError: a TPU name is looked up over the network (URLError when that fails).
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as e:
        raise UserError(
            f"--strategy=tpu: no TPU found{f' at --tpu={tpu!r}' if tpu else ''} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); on Colab pick "
            "a TPU runtime, elsewhere pass --tpu=NAME_OR_GRPC_ADDRESS"
        ) from e
    return tf.distribute.TPUStrategy(resolver)


def build_strategy(
    name: str = "auto", tpu: str = "", announce: bool = True
) -> tf.distribute.Strategy:
    """Creates the distribution strategy (once per kind per process) and prints what it runs on.

    Args:
      name: auto (a TPU if one is attached, else Mirrored over several GPUs, else one device),
        default, one_device, mirrored (all GPUs, or all logical CPUs when there is no GPU),
        multi_worker (TF_CONFIG describes the cluster) or tpu.
      tpu: TPU name or grpc:// address for name="tpu" (empty: the attached one).
      announce: print the strategy line (the CLI's early multi-worker set-up does not; the
        trainer's call prints it once).

    Returns:
      The strategy; its class, replica count and devices are printed.

    Raises:
      UserError: unknown name, multi_worker without TF_CONFIG, or no TPU where one was asked.
    """
    if name not in STRATEGIES:
        raise UserError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "auto":
        if _tpu_available():
            name = "tpu"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if (name, tpu) in _CACHE:
        strategy = _CACHE[name, tpu]
    elif name == "tpu":
        strategy = _tpu_strategy(tpu)
    elif name == "multi_worker":
        tf_config.check_tf_config()  # also before TF loads (usage.preflight); here for callers
        # Created before anything lists logical devices: that initialises the runtime, and
        # collective ops can only be configured before it is.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "one_device":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.OneDeviceStrategy(devices[0].name)
    else:
        strategy = tf.distribute.get_strategy()
    _CACHE[name, tpu] = strategy
    # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy; print the API name.
    kind = "MultiWorkerMirroredStrategy" if name == "multi_worker" else type(strategy).__name__
    if announce:
        print(
            f"Strategy {kind}: {strategy.num_replicas_in_sync} replica(s) on "
            f"{', '.join(_devices(strategy)) or 'the default device'}",
            flush=True,
        )
    return strategy


def _devices(strategy: tf.distribute.Strategy) -> tuple[str, ...]:
    try:
        return tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list
        return ()


def device_kind(strategy: tf.distribute.Strategy) -> str:
    """ "TPU", "GPU" or "CPU": what the strategy's replicas run on."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "TPU"
    devices = _devices(strategy)
    if devices:
        return "GPU" if any("GPU" in d.upper() for d in devices) else "CPU"
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


# ---------------------------------------------------------------------------------------------
# Batch size and learning rate
# ---------------------------------------------------------------------------------------------


def per_replica_batch_size(
    global_batch_size: int,
    strategy: tf.distribute.Strategy,
    field: str = "config.data.global_batch_size",
) -> int:
    """The batch each replica computes on; the global batch must split evenly.

    Raises:
      UserError: the global batch is not a multiple of the replica count.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        lower = max(replicas, global_batch_size // replicas * replicas)
        raise UserError(
            f"{field}={global_batch_size} does not split evenly over {replicas} replicas "
            f"({type(strategy).__name__}); use a multiple of {replicas}, e.g. {lower} or "
            f"{lower + replicas}"
        )
    return global_batch_size // replicas


def scaled_learning_rate(learning_rate: float, global_batch_size: int, scaling: str) -> float:
    """The learning rate for this global batch: unchanged ("none") or times batch / 256."""
    if scaling == "linear":
        return learning_rate * global_batch_size / LR_REFERENCE_BATCH
    return learning_rate


# ---------------------------------------------------------------------------------------------
# Precision and compilation
# ---------------------------------------------------------------------------------------------


def _gpus_support_float16() -> bool:
    # Tensor cores (compute capability 7.0+) are where float16 pays; older GPUs run it slower.
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if not capability or tuple(capability) < (7, 0):
            return False
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(precision: str, strategy: tf.distribute.Strategy) -> str:
    """The Keras dtype policy for `precision` on this strategy's devices.

    auto: mixed_bfloat16 on TPU (native bfloat16 matrix units), mixed_float16 on GPUs with
    tensor cores, float32 elsewhere. bfloat16 measured no faster on this project's 2-core CPU,
    so CPU stays float32 unless asked.
    """
    if precision not in PRECISIONS:
        raise UserError(
            f"config.runtime.precision={precision!r} is not one of {', '.join(PRECISIONS)}"
        )
    if precision != "auto":
        return precision
    kind = device_kind(strategy)
    if kind == "TPU":
        return "mixed_bfloat16"
    if kind == "GPU" and _gpus_support_float16():
        return "mixed_float16"
    return "float32"


def set_precision(policy: str) -> None:
    """Sets Keras's global dtype policy; layers built afterwards compute in it.

    Must run before the model is built: a layer takes the policy current at its construction.
    Variables stay float32 under the mixed policies; the classifier's head is float32 anyway.
    """
    keras.mixed_precision.set_global_policy(policy)


def xla_works(strategy: tf.distribute.Strategy) -> bool:
    """Whether jit_compile=True can train under `strategy`.

    Measured with Keras 3.15 / TF 2.21: under MirroredStrategy over 2 logical CPUs the first
    XLA step fails ("Trying to access resource Conv1/kernel/replica_1 located in device
    CPU:1 from device CPU:0"). Multi-GPU Mirrored is not measured here and is allowed.
    """
    return strategy.num_replicas_in_sync == 1 or device_kind(strategy) != "CPU"


def resolve_jit_compile(jit_compile: str, strategy: tf.distribute.Strategy) -> bool | str:
    """ "auto" stays "auto" (Keras decides: off on CPU and under tf.distribute), else a bool.

    Raises:
      UserError: an unknown value, or "true" where XLA cannot train (`xla_works`).
    """
    if jit_compile not in JIT_COMPILE:
        raise UserError(
            f"config.runtime.jit_compile={jit_compile!r} is not one of {', '.join(JIT_COMPILE)}"
        )
    if jit_compile == "true" and not xla_works(strategy):
        raise UserError(
            "config.runtime.jit_compile=true fails under "
            f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} CPU replicas "
            "(XLA cannot reach the other replica's variables); use auto or false"
        )
    return {"auto": "auto", "true": True, "false": False}[jit_compile]


def multi_step_execution_works(strategy: tf.distribute.Strategy) -> bool:
    """Whether Keras can run several training steps per call under `strategy`.

    Measured with Keras 3.15 / TF 2.21: steps_per_execution > 1 under MirroredStrategy with
    2 replicas fails on the first call ("You must feed a value for placeholder tensor
    'while/cond/Placeholder_1'"), even for a one-Dense model; one device and a 1-replica
    Mirrored work. TPUs are what the option is for.
    """
    return isinstance(strategy, tf.distribute.TPUStrategy) or strategy.num_replicas_in_sync == 1


def resolve_steps_per_execution(steps: int | None, strategy: tf.distribute.Strategy) -> int:
    """Training steps per compiled call: `steps` if set, else 32 on TPU and 1 elsewhere.

    Raises:
      UserError: more than 1 under a strategy where Keras cannot run it.
    """
    if steps is None:
        return TPU_STEPS_PER_EXECUTION if device_kind(strategy) == "TPU" else 1
    if steps > 1 and not multi_step_execution_works(strategy):
        raise UserError(
            f"config.runtime.steps_per_execution={steps} fails under "
            f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replicas "
            "(a Keras 3.15 bug); unset it or use 1"
        )
    return steps


# ---------------------------------------------------------------------------------------------
# Several workers: who writes, and which examples each one reads
# ---------------------------------------------------------------------------------------------
