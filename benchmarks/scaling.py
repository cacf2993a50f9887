"""Replica scaling benchmark: training images/s on 1 and N replicas, and the efficiency.

  .venv/bin/python benchmarks/scaling.py [--image-size=32] [--batch=64] [--steps=30]

On a machine without GPUs the CPU is split into 2 logical devices, as in the tests, and the
2-replica number is a MirroredStrategy over them. Both replicas then share the same cores, so
the efficiency printed there measures tf.distribute's overhead, not a speed-up. On a machine
with GPUs the N replicas are the N GPUs. Each row is measured with float32 and with the
device's mixed precision (bfloat16 on CPU, float16 on GPU), with and without XLA.

Data are synthetic uint8 batches held in memory, so the input pipeline is not what is timed
(benchmarks/input_pipeline.py measures that). The model is the real classifier with its
whole base trainable (the phase-2 worst case).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

_GPUS = tf.config.list_physical_devices("GPU")
if not _GPUS:
    # Before anything initialises the runtime: afterwards devices cannot be split.
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
    )

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sft_tf.distribute import strategy as strategy_lib
from sft_tf.model import classifier, unfreeze


def images_per_second(
    strategy: tf.distribute.Strategy,
    policy: str,
    jit_compile: bool,
    backbone: str,
    alpha: float | None,
    image_size: int,
    batch: int,
    steps: int,
) -> float:
    """Steady-state training throughput of one configuration (after a warm-up epoch)."""
    strategy_lib.set_precision(policy)
    try:
        with strategy.scope():
            model = classifier.build_classifier(
                backbone, 10, image_size, weights="", batchnorm="train", alpha=alpha
            )
            unfreeze.unfreeze_top_blocks(
                classifier.get_base(model), backbone, -1, train_batchnorm=True
            )
            model.compile(
                optimizer=keras.optimizers.Adam(1e-4),
                loss="sparse_categorical_crossentropy",
                jit_compile=jit_compile,
            )
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, batch).astype(np.int32)
        ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
        # Warm-up: tracing, XLA compilation, collective set-up.
        model.fit(ds, epochs=1, steps_per_epoch=5, shuffle=False, verbose=0)
        start = time.perf_counter()
        model.fit(ds, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
        return steps * batch / (time.perf_counter() - start)
    finally:
        strategy_lib.set_precision("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="MobileNetV2")
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="global batch size")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    kind = "GPU" if _GPUS else "CPU"
    mixed = "mixed_float16" if _GPUS else "mixed_bfloat16"
    one = strategy_lib.build_strategy("one_device")
    many = strategy_lib.build_strategy("mirrored")
    n = many.num_replicas_in_sync
    print(
        f"\n{args.backbone} (alpha {args.alpha}) {args.image_size}px, whole base training, "
        f"global batch {args.batch}, {args.steps} timed steps; {n} {kind} replicas"
        + ("" if _GPUS else " (logical devices sharing the same cores)")
    )
    print(f"{'precision':<16}{'XLA':<6}{'1 replica':>12}{f'{n} replicas':>14}{'efficiency':>12}")
    for policy in ("float32", mixed):
        for jit in (False, True):
            rates = [
                images_per_second(
                    s,
                    policy,
                    jit,
                    args.backbone,
                    args.alpha,
                    args.image_size,
                    args.batch,
                    args.steps,
                )
                # XLA cannot train 2 CPU replicas (strategy_lib.xla_works): no number there.
                if strategy_lib.xla_works(s) or not jit
                else None
                for s in (one, many)
            ]
            many_rate = f"{rates[1]:>12.0f}/s" if rates[1] else f"{'n/a':>14}"
            efficiency = f"{rates[1] / (n * rates[0]):>12.2f}" if rates[1] else f"{'':>12}"
            xla = "on" if jit else "off"
            print(f"{policy:<16}{xla:<6}{rates[0]:>10.0f}/s{many_rate}{efficiency}")
    print("\nefficiency = N-replica images/s / (N x 1-replica images/s); 1.0 is perfect scaling.")


if __name__ == "__main__":
    main()
