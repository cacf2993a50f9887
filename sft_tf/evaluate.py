"""Metrics from predictions: accuracy, top-k, per-class recall, confusion matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf


def collect_predictions(
    predict: Callable[[tf.Tensor], np.ndarray], dataset: tf.data.Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """Runs `predict` over (images, labels) batches.

    Returns:
      (probabilities float [N, C], labels int [N]).
    """
    probs, labels = [], []
    for images, y, *_ in dataset:
        probs.append(np.asarray(predict(images)))
        labels.append(y.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], top_k: int = 5
) -> dict:
    """Accuracy, top-k accuracy, per-class recall and the confusion matrix.

    Args:
      probabilities: float [N, C].
      labels: int [N].
      class_names: C names.
      top_k: k for the top-k accuracy (capped at C).

    Returns:
      A JSON-able dict.
    """
    n_classes = len(class_names)
    predicted = probabilities.argmax(-1)
    k = min(top_k, n_classes)
    top = np.argsort(-probabilities, axis=-1)[:, :k]
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(1)
    recall = np.divide(np.diag(confusion), support, out=np.zeros(n_classes), where=support > 0)
    eps = np.finfo(np.float32).tiny
    loss = float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(labels)), labels], eps))))
    return {
        "examples": len(labels),
        "accuracy": round(float(np.mean(predicted == labels)), 4),
        f"top{k}_accuracy": round(float(np.mean((top == labels[:, None]).any(-1))), 4),
        "loss": round(loss, 4),
        "per_class_recall": {name: round(float(r), 4) for name, r in zip(class_names, recall)},
        "confusion_matrix": confusion.tolist(),
    }
