"""`sft-tf audit`: check every data split; write audit.json, audit.md and exclude_suggested.txt.

Bytes and pixels (`data/audit.py`): counts, bad files, odd formats, identical images and
near-duplicates within and across splits. The base's eyes (`data/feature_audit.py`): pooled
features of every decodable image from the configured backbone and weights, with the
training pipeline's decode and resize, give likely label errors in the training split and
outliers in each split.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np

from sft_tf.data import audit as audit_lib
from sft_tf.data import examples as examples_lib
from sft_tf.data import feature_audit
from sft_tf.data import scan as scan_lib
from sft_tf.files import write_json_atomic, write_text_atomic
from sft_tf.log import say
from sft_tf.training.inputs import list_target_splits
from sft_tf.training.screening import decoded_to_keep, scan_splits

SHOWN = 16  # images a figure of audit.md shows
PRINTED = 5  # findings of each kind printed on the terminal


def audit(config: ml_collections.ConfigDict, workdir: str | Path) -> int:
    """Audits every split of `config.data`, prints the findings, writes them to the workdir.

    Returns:
      1 when the audit found problems (an empty class, a single class, images shared by train
      and test), else 0: the exit status of `sft-tf audit`.
    """
    splits = list_target_splits(config)
    # As `train` scans (without refusing anything): large JPEGs decode for the model's size,
    # and where the pixel cache would hold a split its pixels are kept for the feature pass.
    scans, splits = scan_splits(
        splits, config.data.max_image_pixels, decoded_to_keep(config), config.model.image_size
    )
    report = audit_lib.audit(splits, scans, config.data.on_leakage)
    decodable = {name: scan_lib.drop_bad(split, scans[name]) for name, split in splits.items()}
    report.update(_feature_findings(config, decodable))
    for line in [*audit_lib.describe(report), *_describe_features(report)]:
        say(line)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / "audit.json", report)
    suggested = sorted({f["where"] for f in report["label_issues"] + report["outliers"]})
    write_text_atomic(workdir / "exclude_suggested.txt", "".join(f"{w}\n" for w in suggested))
    _write_markdown(config, workdir, report, decodable)
    say(f"Wrote {workdir / 'audit.json'}, audit.md and exclude_suggested.txt ({len(suggested)})")
    return 1 if report["problems"] else 0


def _feature_findings(config, splits: dict[str, examples_lib.Examples]) -> dict:
    """label_issues (training split) and outliers (every split), each entry naming its file."""
    import keras

    from sft_tf.training import feature_store, recipe

    train = splits["train"]
    say(
        f"Features of every image from {config.model.backbone} ({config.model.weights or 'random'})"
    )
    if not config.model.weights:
        say(
            "Warning: config.model.weights is empty: a random base's features say little about "
            "the images, so its likely label errors and outliers are mostly noise (the bad "
            "files, duplicates and leakage above do not depend on it). Audit with a pretrained "
            "base: --config.model.weights=imagenet or RUN/backbone.weights.h5 (sft-tf pretrain)"
        )
    keras.utils.set_random_seed(config.seed)  # a random base is the same one on every run
    model = recipe.build_model(config, len(train.class_names), config.model.weights, "frozen")
    # Kept in the feature store: a following `train` of this data and base reuses them.
    features = {n: feature_store.pooled_features(config, model, s) for n, s in splits.items()}
    names = {name: split.names() for name, split in splits.items()}
    find = feature_audit.multi_label_issues if train.multi_label else feature_audit.label_issues
    found = find(features["train"], train.labels, train.class_names, config.seed)
    issues = [{"where": names["train"][f.pop("index")], **f} for f in found]
    outliers = []
    for name, split_features in features.items():
        scores = feature_audit.outlier_scores(split_features)
        for i in feature_audit.top_outliers(scores):
            outliers.append(
                {"where": names[name][i], "split": name, "score": round(float(scores[i]), 4)}
            )
    outliers.sort(key=lambda o: o["score"])
    return {"label_issues": issues, "outliers": outliers}


def _describe_features(report: dict) -> list[str]:
    lines = [f"{len(report['label_issues'])} likely label error(s) in train (cleanlab)"]
    for issue in report["label_issues"][:PRINTED]:
        lines.append(
            f"  {issue['where']}: labelled {issue['given']}, looks like {issue['suggested']} "
            f"(quality {issue['score']})"
        )
    lines.append(f"{len(report['outliers'])} outlier(s), farthest first")
    for outlier in report["outliers"][:PRINTED]:
        lines.append(f"  {outlier['where']} ({outlier['split']}, score {outlier['score']})")
    return lines


def _images(config, splits, wanted: list[tuple[str, str]]) -> np.ndarray:
    """Decoded images of (split, name) pairs, in that order, at the model's size: one pass
    over each split (a record source is streamed once, not once an image)."""
    images = [None] * len(wanted)
    for split in {s for s, _ in wanted}:
        index = {name: i for i, name in enumerate(splits[split].names())}
        slots = [k for k, (s, _) in enumerate(wanted) if s == split]
        pixels = examples_lib.decoded_images(
            splits[split],
            [index[wanted[k][1]] for k in slots],
            config.model.image_size,
            config.data.resize_method,
        )
        for k, image in zip(slots, pixels):
            images[k] = image
    return np.stack(images)


def _write_markdown(config, workdir: Path, report: dict, splits) -> None:
    from sft_tf.evaluation.report import plot_image_grid

    lines = [f"# Audit of {config.name}", "", *[f"- {p}" for p in report["problems"]]]
    issues = report["label_issues"][:SHOWN]
    if issues:
        images = _images(config, splits, [("train", i["where"]) for i in issues])
        captions = [f"{Path(i['where']).name}\n{i['given']} -> {i['suggested']}" for i in issues]
        plot_image_grid(
            images,
            captions,
            "Likely label errors: given -> suggested",
            workdir / "label_issues.png",
        )
        lines += ["", "## Likely label errors", "", "![label issues](label_issues.png)"]
    outliers = report["outliers"][:SHOWN]
    if outliers:
        images = _images(config, splits, [(o["split"], o["where"]) for o in outliers])
        captions = [f"{Path(o['where']).name}\n{o['split']} {o['score']}" for o in outliers]
        plot_image_grid(images, captions, "Outliers, farthest first", workdir / "outliers.png")
        lines += ["", "## Outliers", "", "![outliers](outliers.png)"]
    pairs = [(k, p) for k, v in report["near_duplicates"].items() for p in v["pairs"]][: SHOWN // 2]
    if pairs:
        wanted = []
        for key, pair in pairs:
            a, _, b = key.partition("/")
            wanted += [(a, pair["a"]), (b or a, pair["b"])]
        captions = [f"{split}: {Path(name).name}" for split, name in wanted]
        plot_image_grid(
            _images(config, splits, wanted),
            captions,
            "Near-duplicate pairs",
            workdir / "near_duplicates.png",
        )
        lines += ["", "## Near-duplicates", "", "![near duplicates](near_duplicates.png)"]
    write_text_atomic(workdir / "audit.md", "\n".join(lines) + "\n")
