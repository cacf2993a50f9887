"""The evaluation report of a multi-label classifier, in the same folder layout as the
single-label one (`report.py`).

write_multilabel_report() puts into one folder:
  metrics.json             exact match, micro/macro F1, mean average precision, and per label
                           precision/recall/F1/average precision/support at its threshold
  precision_recall.png     one precision-recall curve per label, its threshold marked
  false_positives.png      the most confident wrong "present" calls (image, label, probability)
  false_negatives.png      the least confident missed labels
  curves.png               loss and per-label accuracy per epoch of both phases
  report.md                all of the above on one page, the per-label table replacing the
                           confusion matrix
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from sft_tf.evaluation import fonts
from sft_tf.evaluation import multilabel as multilabel_lib
from sft_tf.evaluation.report import (
    WRONG_GRID,
    _save,
    plot_curves,
    plot_image_grid,
    write_markdown,
)


def plot_precision_recall(
    probabilities: np.ndarray, truth: np.ndarray, class_names, thresholds, path: Path
) -> str:
    """Per-label precision-recall curves, one panel per label, the threshold marked."""
    from sklearn.metrics import precision_recall_curve  # ~1 s to import: only when drawn

    n = len(class_names)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 3.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for c, (ax, name) in enumerate(zip(axes.flat, class_names)):
        ax.axis("on")
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if not truth[:, c].any():
            ax.text(0.5, 0.5, "no positives", ha="center", va="center")
            continue
        precision, recall, _ = precision_recall_curve(truth[:, c], probabilities[:, c])
        ax.plot(recall, precision)
        at = probabilities[:, c] >= thresholds[c]
        hits = (at & truth[:, c]).sum()
        if at.any():
            ax.plot(hits / truth[:, c].sum(), hits / at.sum(), "o", label=f"t={thresholds[c]:.2f}")
            ax.legend(loc="lower left", fontsize=7)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
    fig.suptitle("Precision-recall per label (test); dot: the tuned threshold")
    return _save(fig, path)


def _worst_calls(probabilities, truth, predicted, false_positive: bool):
    """(example, label) pairs of the most confident false positives, or of the false
    negatives the model was surest were absent, at most WRONG_GRID."""
    mask = predicted & ~truth if false_positive else truth & ~predicted
    rows, cols = np.nonzero(mask)
    scores = probabilities[rows, cols]
    order = np.argsort(-scores if false_positive else scores, kind="stable")[:WRONG_GRID]
    return rows[order], cols[order], scores[order]


def _call_figures(folder, probabilities, truth, predicted, class_names, load_images) -> dict:
    figures = {}
    for false_positive, heading, file, word in (
        (True, "Most confident false positives", "false_positives.png", "not"),
        (False, "Most confidently missed labels", "false_negatives.png", "missed"),
    ):
        rows, cols, scores = _worst_calls(probabilities, truth, predicted, false_positive)
        if len(rows):
            captions = [f"{word}: {class_names[c]} ({s:.2f})" for c, s in zip(cols, scores)]
            figures[heading] = plot_image_grid(load_images(rows), captions, heading, folder / file)
    return figures


def write_multilabel_report(
    folder: str | Path,
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    load_images: Callable[[np.ndarray], np.ndarray],
    thresholds: np.ndarray,
    history: dict | None = None,
    phase_switch: int | None = None,
    title: str = "Evaluation report",
) -> dict:
    """Writes the report folder of a multi-label model; returns its metrics.

    Args:
      folder: created if missing; files inside are replaced.
      probabilities: float [N, C] on the test split.
      labels: multi-hot [N, C].
      class_names: C label names.
      load_images: callable(indices) -> uint8 [len, H, W, 3].
      thresholds: [C] per-label thresholds (tuned on validation).
      history: per-epoch metrics of both phases, if any.
      phase_switch: the number of phase-1 epochs, to mark the switch on the curves.
      title: first line of report.md.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = multilabel_lib.multilabel_metrics(probabilities, labels, class_names, thresholds)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    truth = np.asarray(labels) > 0
    predicted = probabilities >= np.asarray(thresholds)[None, :]
    shown, rc = fonts.figure_labels(class_names)
    with plt.rc_context(rc):
        figures = {
            "Precision-recall curves": plot_precision_recall(
                probabilities, truth, shown, thresholds, folder / "precision_recall.png"
            ),
            **_call_figures(folder, probabilities, truth, predicted, shown, load_images),
        }
        if history and history.get("loss"):
            figures["Training curves"] = plot_curves(
                history, phase_switch, folder / "curves.png", ("loss", "binary_accuracy")
            )
    lines = [
        f"# {title}",
        "",
        f"{metrics['examples']} test images, {len(class_names)} labels (multi-label). "
        f"Mean average precision **{metrics['mean_average_precision']:.4f}**, macro F1 "
        f"{metrics['macro_f1']:.4f}, micro F1 {metrics['micro_f1']:.4f}, exact match "
        f"{metrics['exact_match']:.4f}, loss {metrics['loss']:.4f}. Thresholds were tuned per "
        "label on the validation split (0.5 without one).",
        "",
        "| label | threshold | precision | recall | F1 | average precision | support |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in metrics["per_class"].items():
        ap = "n/a" if m["average_precision"] is None else f"{m['average_precision']:.3f}"
        cells = [f"{m[key]:.3f}" for key in ("threshold", "precision", "recall", "f1")]
        lines.append(f"| {name} | {' | '.join(cells)} | {ap} | {m['support']} |")
    write_markdown(folder / "report.md", lines, class_names, shown, figures)
    return metrics
