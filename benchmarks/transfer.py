"""Fine-tuning vs. training from scratch on Fashion-MNIST, offline, measured in one run.

Table 1: the demo's source -> target split (configs/fashion_mnist.py): a base pretrained on
five classes, then the other five classes with 10, 20 and 100 labels per class, averaged over
seeds, for four recipes: from scratch (same labels, same epochs), head only (phase 1), the
two-phase default, and the two-phase default with L2-SP.

Table 2 (--full): all ten classes and the full training set, trained from scratch with the
best recipe that fits the time budget (or the one the --full_* flags give), next to published
Fashion-MNIST results.

  .venv/bin/python benchmarks/transfer.py                 # table 1, 3 seeds (~25 min, 2 CPUs)
  .venv/bin/python benchmarks/transfer.py --seeds=1 --labels=20
  .venv/bin/python benchmarks/transfer.py --full          # table 2 as well (~12 min more)
  .venv/bin/python benchmarks/transfer.py --full --labels=  # table 2 only
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import re
import statistics
import sys
import time
from pathlib import Path

from sft_tf.config import schema

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = [  # test accuracy on Fashion-MNIST, from the papers / the dataset's benchmark page
    ("2-layer CNN (Fashion-MNIST benchmark)", 0.916),
    ("ResNet18", 0.949),
    ("WRN-28-10 (random erasing)", 0.959),
    ("ResNet50 fine-tuned from ImageNet", 0.931),
]


def _load_config(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _quiet(fn, *args):
    """Runs a trainer with its per-epoch output swallowed; returns (result, seconds)."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = fn(*args)
    return result, time.perf_counter() - start


def _accuracy(metrics: dict, phase: str) -> float:
    return metrics[phase]["test"]["accuracy"]


def table_one(workdir: Path, labels: list[int], seeds: list[int]) -> list[tuple]:
    from sft_tf.commands import pretrain, train
    from sft_tf.training.layout import BACKBONE_FILE

    base = _load_config("fashion_mnist")
    base.export.dir = ""
    source, seconds = _quiet(pretrain.pretrain, base, workdir / "source")
    print(
        f"Source base: {len(source['source_classes'])} classes, test accuracy "
        f"{source['source_test_accuracy']:.4f} ({seconds:.0f} s; reused if already there)",
        flush=True,
    )
    weights = str(workdir / "source" / BACKBONE_FILE)
    recipes = {
        "from scratch": lambda c: (schema.scratch_baseline(c), "phase2"),
        "head only (phase 1)": lambda c: (_with(c, weights=weights, phase2_epochs=0), "phase1"),
        "two-phase default": lambda c: (_with(c, weights=weights), "phase2"),
        "two-phase + L2-SP 0.01": lambda c: (_with(c, weights=weights, l2sp=0.01), "phase2"),
    }
    rows = []
    for n in labels:
        for name, make in recipes.items():
            scores = []
            for seed in seeds:
                config = copy.deepcopy(base)
                config.seed = seed
                config.data.examples_per_class = n
                config, phase = make(config)
                # One workdir per recipe and seed (a finished workdir is reused, not retrained).
                tag = f"{n}_{re.sub(r'[^a-z0-9.]+', '-', name.lower()).strip('-')}_{seed}"
                metrics, seconds = _quiet(train.run, config, workdir / tag)
                scores.append(_accuracy(metrics, phase))
                print(
                    f"  {n:>3} labels/class  {name:<24} seed {seed}: {scores[-1]:.4f} "
                    f"({seconds:.0f} s)",
                    flush=True,
                )
            rows.append((n, name, statistics.mean(scores), statistics.pstdev(scores)))
    return rows


def _with(config, weights: str, phase2_epochs: int | None = None, l2sp: float = 0.0):
    config.model.weights = weights
    if phase2_epochs is not None:
        config.phase2.epochs = phase2_epochs
    config.phase2.l2sp = l2sp
    return config


def table_two(workdir: Path, args: argparse.Namespace) -> tuple[float, float]:
    """All ten classes, every training image, from scratch: (accuracy, minutes).

    The `--full_*` flags give the backbone, width, size, epochs, optimizer, learning rate,
    weight decay, dropout and augmentation. Their defaults are the fastest of the best
    recipes tried within the 20-minute budget on 2 CPU cores (docs/benchmarks.md): MobileNetV2
    alpha 0.35 at 56 px, 8 epochs, 0.905 in 12 min. At 32 px MobileNetV2's last feature map
    is 1x1 (0.806); 48 px, and MobileNet alpha 0.5 for 16 epochs (with translation, or with
    weight decay and more dropout) all end at 0.903-0.906.
    """
    from sft_tf.commands import train

    config = _load_config("fashion_mnist")
    config.name = "fashion_mnist_full"
    config.export.dir = ""
    config.model.backbone = args.full_backbone
    config.model.alpha = args.full_alpha or None
    config.model.image_size = args.full_image_size
    config.model.dropout = args.full_dropout
    config.data.classes = None
    config.data.examples_per_class = None
    config.data.global_batch_size = 128
    config.data.augment = args.full_augment
    config.phase1.epochs = 0
    config.phase2.epochs = args.full_epochs
    config.phase2.unfreeze_blocks = -1
    config.phase2.batchnorm = "train"
    config.phase2.optimizer = args.full_optimizer
    config.phase2.learning_rate = args.full_learning_rate
    config.phase2.weight_decay = args.full_weight_decay
    config.phase2.warmup_epochs = 1.0
    config.phase2.label_smoothing = 0.1
    # Every --full_* value names the workdir (a finished workdir is reused, not retrained).
    tag = "_".join(str(v) for k, v in vars(args).items() if k.startswith("full_"))
    metrics, seconds = _quiet(train.run, config, workdir / f"full_{tag}")
    return _accuracy(metrics, "phase2"), seconds / 60


def _print_table_one(rows: list[tuple], labels: list[int], seeds: int) -> None:

    print(f"\nTable 1: target test accuracy (5 unseen classes), mean of {seeds} seed(s)\n")
    print(f"| labels/class | {' | '.join(sorted({r[1] for r in rows}, key=_order))} |")
    print("|---" * (1 + len({r[1] for r in rows})) + "|")
    verdicts = []
    for n in labels:
        cells = {name: (mean, std) for m, name, mean, std in rows if m == n}
        ordered = sorted(cells, key=_order)
        print(
            f"| {n} | "
            + " | ".join(f"{cells[k][0]:.3f} ± {cells[k][1]:.3f}" for k in ordered)
            + " |"
        )
        gain = cells["two-phase default"][0] - cells["from scratch"][0]
        verdicts.append((n, gain))
    print()
    for n, gain in verdicts:
        target = " (target >= +15 points)" if n == 20 else " (target: never below scratch)"
        print(
            f"two-phase default minus scratch at {n} labels/class: {100 * gain:+.1f} points{target}"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--labels", default="10,20,100", help="labels per class, comma-separated ('': no table 1)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds averaged per cell")
    parser.add_argument("--full", action="store_true", help="also run table 2 (all classes)")
    # Table 2's recipe (defaults: the best measured within 20 minutes on 2 CPUs, see table_two).
    parser.add_argument("--full_backbone", default="MobileNetV2")
    parser.add_argument("--full_alpha", type=float, default=0.35, help="MobileNet width; 0: none")
    parser.add_argument("--full_image_size", type=int, default=56)
    parser.add_argument("--full_epochs", type=int, default=8)
    parser.add_argument("--full_optimizer", default="adam")
    parser.add_argument("--full_learning_rate", type=float, default=2e-3)
    parser.add_argument("--full_weight_decay", type=float, default=0.0, help="adamw and sgd only")
    parser.add_argument("--full_dropout", type=float, default=0.2)
    parser.add_argument("--full_augment", default="flip")
    parser.add_argument("--workdir", default="runs/bench_transfer")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    labels = [int(n) for n in args.labels.split(",") if n]
    if labels:
        _print_table_one(table_one(workdir, labels, list(range(args.seeds))), labels, args.seeds)

    if args.full:
        accuracy, minutes = table_two(workdir, args)
        print("\nTable 2: all 10 classes, full training set\n")
        print("| model | test accuracy |\n|---|---|")
        print(
            f"| sft_tf {args.full_backbone} (alpha {args.full_alpha}, {args.full_image_size} px, "
            f"from scratch, {args.full_augment}, {args.full_optimizer} "
            f"{args.full_learning_rate:g} cosine, weight decay {args.full_weight_decay:g}, "
            f"dropout {args.full_dropout:g}), "
            f"{args.full_epochs} epochs, "
            f"{minutes:.1f} min on this machine | {accuracy:.3f} |"
        )
        for name, acc in PUBLISHED:
            print(f"| {name} (published) | {acc:.3f} |")
    return 0


def _order(name: str) -> int:
    return [
        "from scratch",
        "head only (phase 1)",
        "two-phase default",
        "two-phase + L2-SP 0.01",
    ].index(name)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
