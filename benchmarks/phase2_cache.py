"""Phase 2 on cached boundary activations vs phase 2 through the whole base, in one run.

  .venv/bin/python benchmarks/phase2_cache.py [--workdir=/tmp/sft_tf_bench] [--images=3000]

Offline: Fashion-MNIST's five target classes of configs/fashion_mnist.py as JPEG folders,
a MobileNetV2 (alpha 0.35) source base pretrained by `sft-tf pretrain` on the other five
classes (reused from benchmarks/input_pipeline.py's workdir when there), then `sft-tf train`
(configs/tiny.py's model) at 96 px, batch 64, 3 phase-1 epochs, 2 blocks open, flip
augmentation, phase2.cache_frozen=on and off alternately, for each phase-2 epoch count in
--epochs. Prints each run's phase-2 time (cache building included) and test accuracy from
metrics.json, the ratio of the best times, and one run with the cache on disk (float32: see
frozen_cache.DISK_DTYPE).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sft_tf.training.layout import BACKBONE_FILE

SFT_TF = [sys.executable, "-m", "sft_tf"]


def write_folders(workdir: Path, images: int) -> dict[str, Path]:
    """train<images>/ and test/ JPEG class folders of the demo's five target classes."""
    import tensorflow as tf

    from sft_tf.data import examples as examples_lib
    from sft_tf.data import sources as sources_lib

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    out = {}
    for split, name, count in (("train", f"p2train{images}", images), ("test", "p2test", 1000)):
        root = workdir / name
        out[split] = root
        if (root / ".complete").is_file():
            continue
        examples = examples_lib.select_classes(
            sources_lib.load_examples(f"fashion_mnist:{split}"), classes, "classes"
        )
        picked = np.sort(np.random.default_rng(0).permutation(len(examples))[:count])
        examples = examples.take(picked)
        for i in range(len(examples)):
            label = examples.class_names[examples.labels[i]].replace("/", "-")
            path = root / label / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tf.io.encode_jpeg(examples.pixels[i], quality=90).numpy())
        (root / ".complete").write_text(str(count))
    return out


def source_weights(workdir: Path) -> str:
    weights = workdir / "source" / BACKBONE_FILE
    if not weights.is_file():
        subprocess.run(
            [
                *SFT_TF,
                "pretrain",
                "--config=configs/fashion_mnist.py",
                f"--workdir={workdir / 'source'}",
                "--config.pretrain.epochs=2",
            ],
            cwd=REPO,
            check=True,
        )
    return str(weights)


def train(workdir: Path, folders, weights: str, epochs: int, *overrides: str) -> dict:
    """One `sft-tf train` run (fresh workdir); returns its metrics.json."""
    run = workdir / "p2run"
    args = [
        *SFT_TF,
        "train",
        "--config=configs/tiny.py",  # MobileNetV2 alpha 0.35, as the source was pretrained
        f"--workdir={run}",
        "--restart",
        f"--config.data.train=folder:{folders['train']}",
        f"--config.data.test=folder:{folders['test']}",
        "--config.data.validation=",
        "--config.data.classes=",
        "--config.data.augment=flip",
        "--config.data.on_leakage=warn",  # Fashion-MNIST's test split has near-duplicates
        f"--config.data.cache_dir={workdir / 'p2cache'}",
        f"--config.model.weights={weights}",
        "--config.model.image_size=96",
        "--config.data.global_batch_size=64",
        "--config.phase1.epochs=3",
        f"--config.phase2.epochs={epochs}",
        "--config.phase2.unfreeze_blocks=2",
        "--config.export.dir=",
        *overrides,
    ]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"sft-tf train failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    metrics = json.loads((run / "metrics.json").read_text())
    weights_file = run / "final.weights.h5"
    metrics["_weights"] = str(weights_file) if weights_file.is_file() else ""
    return metrics


def phase2_seconds(metrics: dict) -> float:
    timing = metrics["timing"]
    return sum(s for name, s in timing.items() if name.startswith("phase 2"))


def compare(workdir: Path, folders, weights: str, epochs: int, repeats: int) -> None:
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for repeat in range(repeats):  # alternate: this machine's speed drifts
        for mode in ("off", "on"):
            metrics = train(
                workdir, folders, weights, epochs, f"--config.phase2.cache_frozen={mode}"
            )
            runs[mode].append(metrics)
            print(
                f"[{epochs} epochs, {repeat}] cache_frozen={mode}: phase 2 "
                f"{phase2_seconds(metrics):.1f} s, test accuracy "
                f"{metrics['phase2']['test']['accuracy']:.4f}; "
                f"timing {json.dumps(metrics['timing'])}",
                flush=True,
            )
    best = {mode: min(phase2_seconds(m) for m in ms) for mode, ms in runs.items()}
    accuracy = {mode: ms[0]["phase2"]["test"]["accuracy"] for mode, ms in runs.items()}
    print(
        f"Phase 2 ({epochs} epochs) cached / uncached wall time: {best['on'] / best['off']:.3f} "
        f"({best['on']:.1f} s vs {best['off']:.1f} s, best of {repeats} each; test accuracy "
        f"{accuracy['on']:.4f} vs {accuracy['off']:.4f}; target <= 0.5)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/sft_tf_bench")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--epochs", default="3,10", help="phase-2 epoch counts to compare")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folders = write_folders(workdir, args.images)
    weights = source_weights(workdir)
    counts = [int(e) for e in args.epochs.split(",")]
    for epochs in counts:
        compare(workdir, folders, weights, epochs, args.repeats)
    disk = train(
        workdir,
        folders,
        weights,
        counts[0],
        "--config.phase2.cache_frozen=on",
        "--config.data.cache=disk",
    )
    print(
        f"On disk (float32), {counts[0]} epochs: phase 2 {phase2_seconds(disk):.1f} s, test "
        f"accuracy {disk['phase2']['test']['accuracy']:.4f}"
    )


if __name__ == "__main__":
    main()
