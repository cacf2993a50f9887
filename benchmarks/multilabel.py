"""Multi-label fine-tuning vs. training from scratch on a Fashion-MNIST mosaic task, offline.

Each image is a 2x2 mosaic of Fashion-MNIST items (56x56 px); a tile holds an item of one of
the demo's five target classes (Dress, Coat, Shirt, Sandal, Ankle boot) or stays blank, and the
image's labels are the classes it shows (one to four tiles filled). The mosaics and their
labels.csv (train / validation / test rows) are written once under the workdir, so the runs
read them as a user's csv: data. Training mosaics come from Fashion-MNIST's training images,
test mosaics from its test images.

Three recipes on the same labels: the demo's two-phase fine-tuning from its pretrained source
base (configs/fashion_mnist.py: five other classes; pretrained here if runs/demo has none), the
same with phase2.batchnorm=train, and the same run from scratch (`schema.scratch_baseline`).
Printed: mean average precision, macro F1 and exact match on the test mosaics at thresholds
tuned on the validation mosaics.

  .venv/bin/python benchmarks/multilabel.py              # 500 mosaics, 2 seeds (~8 min, 2 CPUs)
  .venv/bin/python benchmarks/multilabel.py --train=200 --seeds=3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

from sft_tf.config import schema

TILE = 28


def _config_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_config(name: str):
    return _config_module(name).get_config()


def _items(split: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fashion-MNIST `split` images of `classes` (uint8 [N, 28, 28]) and their label ids."""
    from sft_tf.data import sources

    examples = sources.load_examples(f"fashion_mnist:{split}")
    wanted = [examples.class_names.index(c) for c in classes]
    keep = np.isin(examples.labels, wanted)
    remap = {c: i for i, c in enumerate(wanted)}
    labels = np.asarray([remap[c] for c in examples.labels[keep]])
    return examples.pixels[keep][..., 0], labels, classes


def _mosaics(pixels, labels, count: int, rng) -> tuple[np.ndarray, list[set[int]]]:
    """`count` 2x2 mosaics: each tile filled with probability 0.6 (at least one per image)."""
    images = np.zeros((count, 2 * TILE, 2 * TILE), np.uint8)
    sets = []
    for i in range(count):
        filled = rng.random(4) < 0.6
        filled[rng.integers(4)] = True
        shown = set()
        for tile in np.flatnonzero(filled):
            item = rng.integers(len(labels))
            y, x = divmod(int(tile), 2)
            images[i, y * TILE : (y + 1) * TILE, x * TILE : (x + 1) * TILE] = pixels[item]
            shown.add(int(labels[item]))
        sets.append(shown)
    return images, sets


def write_task(folder: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """The mosaic PNGs and labels.csv under `folder` (kept: a rerun reuses them)."""
    import tensorflow as tf

    csv = folder / "labels.csv"
    if csv.is_file():
        return csv
    classes = _config_module("fashion_mnist").TARGET_CLASSES.split(",")
    rng = np.random.default_rng(seed)
    rows = ["image,label,split"]
    for split, source in (("train", "train"), ("validation", "train"), ("test", "test")):
        pixels, labels, names = _items(source, classes)
        images, sets = _mosaics(pixels, labels, counts[split], rng)
        (folder / split).mkdir(parents=True, exist_ok=True)
        for i, (image, shown) in enumerate(zip(images, sets)):
            name = f"{split}/{i:05d}.png"
            (folder / name).write_bytes(tf.io.encode_png(image[..., None]).numpy())
            rows.append(f"{name},{'|'.join(names[c] for c in sorted(shown))},{split}")
    csv.write_text("\n".join(rows) + "\n")
    return csv


def _config(csv: Path, seed: int):
    config = _load_config("fashion_mnist")
    config.name = "fashion_mnist_mosaics"
    config.seed = seed
    config.export.dir = ""
    config.model.image_size = 64  # each 28 px tile at the 32 px scale the source base saw
    config.data.multi_label = True
    config.data.classes = None
    config.data.examples_per_class = None
    config.data.train = f"csv:{csv}:train"
    config.data.validation = f"csv:{csv}:validation"
    config.data.test = f"csv:{csv}:test"
    return config  # the demo's recipe otherwise: 20 + 20 epochs, 8 blocks open in phase 2


def _quiet(fn, *args):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "runs" / "bench_multilabel"))
    parser.add_argument("--source", default=str(REPO / "runs" / "demo" / "source"))
    parser.add_argument("--train", type=int, default=500, help="training mosaics")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()

    from sft_tf.commands import pretrain, train
    from sft_tf.training.layout import BACKBONE_FILE

    workdir = Path(args.workdir)
    csv = write_task(
        workdir / f"data_{args.train}", {"train": args.train, "validation": 200, "test": 1000}
    )
    source = _load_config("fashion_mnist")
    source.export.dir = ""
    info, seconds = _quiet(pretrain.pretrain, source, Path(args.source))
    print(f"Source base: test accuracy {info['source_test_accuracy']:.4f} ({seconds:.0f} s)")
    weights = str(Path(args.source) / BACKBONE_FILE)

    def finetuned(config, batchnorm="frozen"):
        config.model.weights = weights
        config.phase2.batchnorm = batchnorm
        return config

    recipes = {
        "fine-tuned (demo's source base)": finetuned,
        "fine-tuned, BatchNorm trained": lambda c: finetuned(c, "train"),
        "from scratch": schema.scratch_baseline,
    }
    rows = []
    for name, make in recipes.items():
        scores = []
        for seed in range(args.seeds):
            config = make(copy.deepcopy(_config(csv, seed)))
            recipe = {"from scratch": "scratch", "fine-tuned, BatchNorm trained": "finetune-bn"}
            recipe = recipe.get(name, "finetune")
            tag = f"{recipe}_{args.train}_{seed}_{config.phase1.epochs}+{config.phase2.epochs}"
            metrics, seconds = _quiet(train.run, config, workdir / tag)
            test = metrics["phase2"]["test"]
            scores.append((test["mean_average_precision"], test["macro_f1"], test["exact_match"]))
            print(
                f"  {name:<32} seed {seed}: mAP {scores[-1][0]:.4f} ({seconds:.0f} s)", flush=True
            )
        rows.append((name, *[statistics.mean(s[k] for s in scores) for k in range(3)]))
    print(f"\n{args.train} training mosaics, 5 labels, {args.seeds} seed(s), test 1000 mosaics\n")
    print("| recipe | mAP | macro F1 | exact match |\n| --- | --- | --- | --- |")
    for name, ap, f1, exact in rows:
        print(f"| {name} | {ap:.4f} | {f1:.4f} | {exact:.4f} |")


if __name__ == "__main__":
    main()
