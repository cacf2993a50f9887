"""`sft-tf demo`: the whole offline story on one config, with its from-scratch baseline.

1. pretrain the backbone on the source classes (reused on a second run),
2. fine-tune it on the target classes with few labels (both phases), export,
3. train the same model from scratch on the same labels (the baseline to beat),
4. print the accuracies side by side and predict a few test images with the export.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import ml_collections
import tensorflow as tf

from sft_tf.commands import pretrain, train
from sft_tf.config import schema
from sft_tf.serving import predict as predict_lib
from sft_tf.training import inputs
from sft_tf.training.layout import BACKBONE_FILE


def _accuracy(metrics: dict, phase: str) -> float | None:
    test = metrics.get(phase, {}).get("test")
    return None if not test else test["accuracy"]


def _write_test_images(config: ml_collections.ConfigDict, folder: Path, count: int) -> list[str]:
    """A few target test images as PNG files, named after their true class."""
    # Listed, not screened again: the fine-tuning run has checked these images already.
    test = inputs.list_target_splits(config)["test"]
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, len(test) // count)
    paths = []
    for i in range(0, step * count, step):
        name = test.class_names[test.labels[i]].replace("/", "-").replace(" ", "_")
        path = folder / f"{i:05d}_{name}.png"
        pixels = test.pixels[i] if test.pixels is not None else None
        if pixels is not None:
            path.write_bytes(tf.io.encode_png(pixels).numpy())
        else:
            path.write_bytes(tf.io.gfile.GFile(test.paths[i], "rb").read())
        paths.append(str(path))
    return paths


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Runs the demo; returns (and writes to <workdir>/demo.json) the accuracy table."""
    workdir = Path(workdir)
    source = pretrain.pretrain(config, workdir / "source")

    finetune_config = copy.deepcopy(config)
    finetune_config.model.weights = str(workdir / "source" / BACKBONE_FILE)
    finetuned = train.run(finetune_config, workdir / "finetune")
    scratch = train.run(schema.scratch_baseline(config), workdir / "scratch")

    rows = [
        ("from scratch (same labels, same epochs)", _accuracy(scratch, "phase2")),
        ("fine-tuned, phase 1 (head only)", _accuracy(finetuned, "phase1")),
        ("fine-tuned, phase 2 (top blocks open)", _accuracy(finetuned, "phase2")),
    ]
    per_class = config.data.examples_per_class
    print(
        f"\nSource: {len(source['source_classes'])} classes, test accuracy "
        f"{source['source_test_accuracy']}.\nTarget: {', '.join(finetuned['classes'])}; "
        f"{per_class or 'all'} labels per class.\n"
    )
    for label, acc in rows:
        print(f"  {label:<42} {'-' if acc is None else f'{acc:.4f}'}")

    images = _write_test_images(config, workdir / "images", count=6)
    results = predict_lib.predict_files(finetuned["export"], images)
    print(f"\nPredictions of {finetuned['export']} on test images (file name = true class):")
    for r in results:
        print(f"  {Path(r['file']).name:<28} {r['classes'][0]} ({r['scores'][0]:.2f})")
    summary = {label: acc for label, acc in rows}
    summary["export"] = finetuned["export"]
    (workdir / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
