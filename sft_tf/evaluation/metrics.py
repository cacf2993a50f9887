"""Metrics from predictions: accuracy, top-k, per-class precision/recall/F1, calibration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CALIBRATION_BINS = 15


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS):
    """Expected calibration error and the per-bin numbers behind a reliability diagram.

    Top-1 confidences are split into `bins` equal-width bins; ECE is the example-weighted mean
    |accuracy - confidence| over the bins.

    Returns:
      (ece, [{"count", "confidence", "accuracy"} per bin]).
    """
    confidence = probabilities.max(-1)
    correct = probabilities.argmax(-1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if count:
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += count / len(labels) * abs(acc - conf)
        else:
            acc = conf = 0.0
        table.append({"count": count, "confidence": round(conf, 4), "accuracy": round(acc, 4)})
    return ece, table


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], top_k: int = 5
) -> dict:
    """Accuracy, top-k accuracy, per-class precision/recall/F1, calibration, confusion matrix.

    Args:
      probabilities: float [N, C].
      labels: int [N].
      class_names: C names.
      top_k: k for the top-k accuracy; left out when k >= C, where it is always 1.

    Returns:
      A JSON-able dict.
    """
    n_classes = len(class_names)
    labels = np.asarray(labels)
    predicted = probabilities.argmax(-1)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    hits = np.diag(confusion).astype(np.float64)
    support = confusion.sum(1)
    claimed = confusion.sum(0)
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    precision = np.divide(hits, claimed, out=np.zeros(n_classes), where=claimed > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(n_classes), where=total > 0)
    loss = negative_log_likelihood(probabilities, labels)
    ece, bins = calibration(probabilities, labels)

    def averages(weights):
        return {
            "precision": round(float(np.average(precision, weights=weights)), 4),
            "recall": round(float(np.average(recall, weights=weights)), 4),
            "f1": round(float(np.average(f1, weights=weights)), 4),
            "support": int(support.sum()),
        }

    top_k_accuracy = {}
    if top_k < n_classes:
        top = np.argsort(-probabilities, axis=-1)[:, :top_k]
        hit = (top == labels[:, None]).any(-1)
        top_k_accuracy[f"top{top_k}_accuracy"] = round(float(np.mean(hit)), 4)
    return {
        "examples": len(labels),
        "accuracy": round(float(np.mean(predicted == labels)), 4),
        **top_k_accuracy,
        "loss": round(loss, 4),
        "ece": round(ece, 4),
        "per_class_recall": {name: round(float(r), 4) for name, r in zip(class_names, recall)},
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro_avg": averages(None),
        "weighted_avg": averages(support if support.sum() else None),
        "calibration_bins": bins,
        "confusion_matrix": confusion.tolist(),
    }


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a temperature-scaled model gives."""
    logits = np.log(np.maximum(probabilities.astype(np.float64), np.finfo(np.float32).tiny))
    logits /= temperature
    logits -= logits.max(-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(-1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class), with p floored at the smallest positive float32."""
    picked = probabilities[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.maximum(picked, np.finfo(np.float32).tiny))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (0.05 to 20) that minimises the negative log-likelihood of `labels`.

    Temperature scaling (Guo et al., 2017) fits one number on held-out data; the argmax, and so
    every accuracy, is unchanged. The NLL is a smooth one-dimensional function of log T: a
    coarse log-spaced grid finds its basin and a fine grid around the best point refines it to
    about 0.1%.
    """

    def best(candidates: np.ndarray) -> float:
        losses = [
            negative_log_likelihood(apply_temperature(probabilities, t), labels) for t in candidates
        ]
        return float(candidates[int(np.argmin(losses))])

    low, high = np.log(0.05), np.log(20.0)
    coarse = np.log(best(np.exp(np.linspace(low, high, 61))))
    step = (high - low) / 60
    return best(np.exp(np.linspace(max(low, coarse - step), min(high, coarse + step), 41)))
