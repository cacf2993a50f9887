"""Training throughput of keras.applications backbones on this machine, measured in one run.

The model is sft_tf's classifier (uint8 images in, the whole base trainable, BatchNorm
training), fed random images from memory, so the number is the model's own cost and not the
input pipeline's. It is what bounds how many epochs fit a time budget (docs/benchmarks.md).

  .venv/bin/python benchmarks/backbone_speed.py
  .venv/bin/python benchmarks/backbone_speed.py --models=MobileNet:0.25:56 \
      --precision=mixed_bfloat16
  .venv/bin/python benchmarks/backbone_speed.py --models=MobileNet:0.25:56 --jit_compile

Each model runs in its own process, so a precision policy or an XLA cache never carries over.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = (
    "MobileNet:0.25:56,MobileNet:0.5:56,MobileNetV2:0.35:56,MobileNetV2:0.35:32,"
    "EfficientNetB0::32,DenseNet121::32,ResNet50::32,VGG16::32"
)


def measure(backbone: str, alpha: str, size: int, args: argparse.Namespace) -> float:
    """Images per second over `args.steps` training steps after a warm-up."""
    import keras
    import numpy as np
    import tensorflow as tf

    from sft_tf.model import classifier

    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    model = classifier.build_classifier(
        backbone, 10, size, batchnorm="train", alpha=float(alpha) if alpha else None
    )
    classifier.get_base(model).trainable = True
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        jit_compile=args.jit_compile,
    )
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch * 8, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.batch * 8)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(args.batch).repeat()
    model.fit(dataset.prefetch(2), steps_per_epoch=5, epochs=1, verbose=0)  # trace, warm up
    start = time.perf_counter()
    model.fit(dataset.prefetch(2), steps_per_epoch=args.steps, epochs=1, verbose=0)
    return args.steps * args.batch / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help="comma-separated BACKBONE:ALPHA:SIZE (ALPHA may be empty)",
    )
    parser.add_argument("--precision", default="float32", help="float32 or mixed_bfloat16")
    parser.add_argument("--jit_compile", action="store_true", help="train with XLA")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model
    args = parser.parse_args(argv)
    if args.one:
        backbone, alpha, size = args.one.split(":")
        print(f"{measure(backbone, alpha, int(size), args):.0f}")
        return 0

    passed = [f"--precision={args.precision}", f"--batch={args.batch}", f"--steps={args.steps}"]
    passed += ["--jit_compile"] if args.jit_compile else []
    print(f"training images/s, batch {args.batch}, {args.precision}, XLA {args.jit_compile}\n")
    print("| backbone | alpha | size | images/s |\n|---|---|---|---|")
    for spec in args.models.split(","):
        backbone, alpha, size = spec.split(":")
        child = subprocess.run(
            [sys.executable, __file__, f"--one={spec}", *passed],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode:
            lines = child.stderr.strip().splitlines() or ["no output"]
            print(f"{spec}: failed: {lines[-1]}", file=sys.stderr)
            return 1
        print(f"| {backbone} | {alpha or '-'} | {size} | {child.stdout.split()[-1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
