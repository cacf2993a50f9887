"""The evaluation report: where a classifier fails, as JSON, PNG figures and one report.md.

write_report() puts into one folder:
  metrics.json            accuracy, top-k, per-class precision/recall/F1/support, macro and
                          weighted averages, expected calibration error
  confusion_matrix.json   rows = true class, columns = predicted class
  confusion_matrix.png
  reliability.png         calibration: confidence vs. accuracy per confidence bin
  confidently_wrong.png   the test images the model got wrong with the highest confidence,
                          each captioned with its file name
  misclassified.csv       every wrong test image: file, true, predicted, confidence
  curves.png              loss and accuracy per epoch of both phases, phase switch marked
  report.md               all of the above on one page
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from sft_tf.evaluation import fonts
from sft_tf.evaluation import metrics as metrics_lib

WRONG_GRID = 16  # images in the "confidently wrong" figure
WRONG_LISTED = 10  # misclassified files listed in report.md (all of them in the CSV)
SURE = 0.5  # below this top-1 probability a mistake is not a "confident" one


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: Path) -> str:
    n = len(class_names)
    size = min(4 + 0.45 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 5 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:  # counts stay readable up to about 30 classes
        peak = confusion.max() or 1
        for i in range(n):
            for j in range(n):
                color = "white" if confusion[i, j] > peak / 2 else "black"
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", color=color)
    ax.set_title("Confusion matrix (test)")
    return _save(fig, path)


def plot_reliability(bins: list[dict], ece: float, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, len(bins) + 1)
    accuracy = [b["accuracy"] if b["count"] else 0.0 for b in bins]
    ax.bar(edges[:-1], accuracy, width=1 / len(bins), align="edge", edgecolor="black", alpha=0.7)
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_image_grid(images: np.ndarray, captions: Sequence[str], title: str, path: Path) -> str:
    """Images four to a row, each with its caption."""
    cols = 4
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def wrong_title(scores) -> str:
    """The grid's title, honest about how sure the model was."""
    if len(scores) and max(scores) < SURE:
        return f"Wrong test images, surest first (all unsure: at most {max(scores):.2f})"
    return "Most confidently wrong test images"


def plot_confidently_wrong(
    images: np.ndarray, files: Sequence[str], true, predicted, scores, path: Path
) -> str:
    captions = [
        f"{_short(os.path.basename(f))}\ntrue: {t}\npred: {p} ({s:.2f})"
        for f, t, p, s in zip(files, true, predicted, scores)
    ]
    return plot_image_grid(images, captions, wrong_title(scores), path)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def plot_curves(
    history: dict, phase_switch: int | None, path: Path, metrics=("loss", "accuracy")
) -> str:
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ax, metric in zip(axes, metrics):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(epochs[: len(values)], values, style, label=(prefix or "train_") + metric)
        if phase_switch:
            # Epochs 1..phase_switch are phase 1; the line sits where phase 2 begins.
            ax.axvline(phase_switch + 0.5, color="gray", linestyle=":", label="phase 2 starts")
        ax.set_xlabel("epoch")
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # no "+1.098" offsets
        ax.set_title(metric)
        ax.legend()
    return _save(fig, path)


def write_markdown(path: Path, lines: list[str], class_names, shown, figures: dict) -> None:
    """report.md: `lines`, the legend of numbered class names (if the figures number them),
    then each figure under its heading."""
    legend = fonts.legend_line(class_names, shown)
    lines = lines + (["", legend] if legend else [])
    for heading, file in figures.items():
        lines += ["", f"## {heading}", "", f"![{heading}]({file})"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_mistakes(path: Path, order, files, true, predicted, scores) -> None:
    """misclassified.csv: every wrong test image, the most confident mistake first."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "true", "predicted", "confidence"])
        for i in order:
            writer.writerow([files[i], true[i], predicted[i], f"{scores[i]:.4f}"])


def _mistake_lines(order, files, true, predicted, scores) -> list[str]:
    if not len(order):
        return ["", "## Misclassified test images", "", "None."]
    shown = order[:WRONG_LISTED]
    lines = [
        "",
        "## Misclassified test images",
        "",
        f"{len(order)} wrong; the {len(shown)} surest below, all of them in "
        "[misclassified.csv](misclassified.csv).",
        "",
        "| file | true | predicted | confidence |",
        "| --- | --- | --- | --- |",
    ]
    for i in shown:
        lines.append(f"| `{files[i]}` | {true[i]} | {predicted[i]} | {scores[i]:.3f} |")
    return lines


def _summary(metrics: dict, class_names, title: str) -> list[str]:
    top = [key for key in metrics if key.startswith("top") and key.endswith("_accuracy")]
    top_k = f", {top[0].replace('_', ' ')} {metrics[top[0]]:.4f}" if top else ""
    return [
        f"# {title}",
        "",
        f"{metrics['examples']} test images, {len(class_names)} classes. "
        f"Accuracy **{metrics['accuracy']:.4f}**{top_k}, "
        f"loss {metrics['loss']:.4f}, expected calibration error {metrics['ece']:.4f}.",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
        *_class_rows(metrics),
    ]


def _class_rows(metrics: dict) -> list[str]:
    rows = list(metrics["per_class"].items())
    rows += [("**macro avg**", metrics["macro_avg"]), ("**weighted avg**", metrics["weighted_avg"])]
    lines = []
    for name, m in rows:
        cells = [f"{m[key]:.3f}" for key in ("precision", "recall", "f1")] + [str(m["support"])]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def write_report(
    folder: str | Path,
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    load_images,
    history: dict | None = None,
    phase_switch: int | None = None,
    top_k: int = 5,
    title: str = "Evaluation report",
    files: Sequence[str] | None = None,
) -> dict:
    """Writes the report folder; returns its metrics.

    Args:
      folder: created if missing; files inside are replaced.
      probabilities: float [N, C] on the test split.
      labels: int [N].
      class_names: C names.
      load_images: callable(indices) -> uint8 [len, H, W, 3] in the order asked, to draw the
        wrong images without holding the whole test split in memory.
      history: per-epoch metrics of both phases (Keras History dicts merged), if any.
      phase_switch: the number of phase-1 epochs, to mark the switch on the curves.
      top_k: k of the top-k accuracy (left out when k is at least the number of classes).
      title: first line of report.md.
      files: what names each test image in the mistakes list (its path); "test #i" if None.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = list(files) if files is not None else [f"test #{i}" for i in range(len(labels))]
    metrics = metrics_lib.classification_metrics(probabilities, labels, class_names, top_k=top_k)
    confusion = np.asarray(metrics.pop("confusion_matrix"))
    bins = metrics.pop("calibration_bins")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "confusion_matrix.json").write_text(
        json.dumps({"classes": list(class_names), "matrix": confusion.tolist()}) + "\n"
    )
    shown, rc = fonts.figure_labels(class_names)
    predicted = probabilities.argmax(-1)
    scores = probabilities[np.arange(len(labels)), predicted]
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-scores[wrong], kind="stable")]
    true_names = [class_names[i] for i in labels]
    predicted_names = [class_names[i] for i in predicted]
    write_mistakes(folder / "misclassified.csv", order, files, true_names, predicted_names, scores)
    with plt.rc_context(rc):
        figures = {
            "Confusion matrix": plot_confusion(confusion, shown, folder / "confusion_matrix.png"),
            "Calibration": plot_reliability(bins, metrics["ece"], folder / "reliability.png"),
        }
        if len(order):
            worst = order[:WRONG_GRID]
            figures[wrong_title(scores[worst])] = plot_confidently_wrong(
                load_images(worst),
                [files[i] for i in worst],
                [shown[i] for i in labels[worst]],
                [shown[i] for i in predicted[worst]],
                scores[worst],
                folder / "confidently_wrong.png",
            )
        if history and history.get("loss"):
            figures["Training curves"] = plot_curves(history, phase_switch, folder / "curves.png")

    lines = _summary(metrics, class_names, title)
    lines += _mistake_lines(order, files, true_names, predicted_names, scores)
    write_markdown(folder / "report.md", lines, class_names, shown, figures)
    return metrics
