"""build_strategy(name) -> a tf.distribute strategy; the training code runs under any of them."""

from __future__ import annotations

import glob
import os

import tensorflow as tf

from sft_tf.errors import UserError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")

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
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def build_strategy(name: str = "auto", tpu: str = "") -> tf.distribute.Strategy:
    """Creates the distribution strategy.

    Args:
      name: auto (a TPU if one is attached, else Mirrored over several GPUs, else one device),
        default, one_device, mirrored (all GPUs, or all logical CPUs when there is no GPU),
        multi_worker (TF_CONFIG describes the cluster) or tpu.
      tpu: TPU name or grpc:// address for name="tpu" (empty: the attached one).

    Returns:
      The strategy; its name, devices and replica count are logged.

    Raises:
      UserError: unknown name, or multi_worker without TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise UserError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        if _tpu_available():
            name = "tpu"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if (name, tpu) in _CACHE:
        strategy = _CACHE[name, tpu]
    elif name == "tpu":
        strategy = _tpu_strategy(tpu)
    elif name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise UserError("--strategy=multi_worker needs TF_CONFIG describing the cluster")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in cpus]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "one_device":
        strategy = tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)
    else:
        strategy = tf.distribute.get_strategy()
    _CACHE[name, tpu] = strategy
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy has no device list
        devices = ()
    print(
        f"Strategy {type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) on "
        f"{', '.join(devices) or 'the default device'}",
        flush=True,
    )
    return strategy
