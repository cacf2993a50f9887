"""Multi-label scores: a threshold per label, per-label precision/recall/F1, micro and macro F1,
mean average precision and the exact-match ratio.

A multi-label model gives one independent probability per label; a label is predicted where its
probability reaches that label's threshold. `tune_thresholds` picks each threshold on validation
data to maximise the label's F1; `multilabel_metrics` scores predictions at given thresholds.
Average precision (the area under a label's precision-recall curve, as scikit-learn computes it)
does not depend on the thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.5


def _f1(hits: np.ndarray, claimed: np.ndarray, support: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (predicted positives + actual positives), 0 where both are 0."""
    total = claimed + support
    return np.divide(2.0 * hits, total, out=np.zeros(np.shape(hits)), where=total > 0)


def _best_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising one label's F1 over every cut between distinct scores."""
    if not positive.any():
        return DEFAULT_THRESHOLD, 0.0
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(positive[order])
    # Predicting the top i + 1 examples: hits[i] true positives out of i + 1 claimed.
    last_of_tie = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    f1 = _f1(hits[last_of_tie], last_of_tie + 1.0, np.full(len(last_of_tie), positive.sum()))
    best = int(np.argmax(f1))
    cut = last_of_tie[best]
    if cut + 1 == len(ranked):  # every example predicted present
        return float(ranked[cut]), float(f1[best])
    # Half-way to the next lower score: the same cut on these examples, a margin on new ones.
    return float((ranked[cut] + ranked[cut + 1]) / 2), float(f1[best])


def tune_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One threshold per label maximising that label's F1 on (validation) data.

    A label with no positive example keeps DEFAULT_THRESHOLD (nothing to tune on).

    Args:
      probabilities: float [N, C] independent per-label probabilities.
      labels: multi-hot [N, C].

    Returns:
      float32 [C] thresholds, rounded to 4 decimals (they go to JSON and the export).
    """
    labels = np.asarray(labels) > 0
    found = [_best_threshold(probabilities[:, c], labels[:, c])[0] for c in range(labels.shape[1])]
    return np.round(np.asarray(found, np.float64), 4).astype(np.float32)


def _average_precision(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-label average precision; NaN for a label without positives (undefined)."""
    # Imported here: scikit-learn takes ~1 s to import, and only multi-label runs need it.
    from sklearn.metrics import average_precision_score

    return np.asarray(
        [
            average_precision_score(labels[:, c], probabilities[:, c])
            if labels[:, c].any()
            else np.nan
            for c in range(labels.shape[1])
        ]
    )


def multilabel_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    thresholds: np.ndarray | None = None,
) -> dict:
    """Per-label precision/recall/F1/support/AP at `thresholds`, and the summaries.

    Args:
      probabilities: float [N, C].
      labels: multi-hot [N, C].
      class_names: C label names.
      thresholds: [C] (None: DEFAULT_THRESHOLD for every label).

    Returns:
      A JSON-able dict: examples, exact_match (every label right), micro_f1 (over all
      label decisions), macro_f1 (mean of per-label F1), mean_average_precision (mean over the
      labels with a positive example), hamming_accuracy (share of right label decisions),
      loss (mean binary cross-entropy), thresholds and per_class.
    """
    truth = np.asarray(labels) > 0
    if thresholds is None:
        thresholds = np.full(truth.shape[1], DEFAULT_THRESHOLD, np.float32)
    predicted = probabilities >= np.asarray(thresholds)[None, :]
    hits = (predicted & truth).sum(0).astype(np.float64)
    claimed, support = predicted.sum(0).astype(np.float64), truth.sum(0)
    precision = np.divide(hits, claimed, out=np.zeros_like(hits), where=claimed > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    f1 = _f1(hits, claimed, support)
    ap = _average_precision(probabilities, truth)
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = -np.mean(truth * np.log(p) + (~truth) * np.log(1 - p))
    return {
        "examples": len(truth),
        "multi_label": True,
        "exact_match": round(float(np.mean((predicted == truth).all(-1))), 4),
        "micro_f1": round(float(_f1(hits.sum(), claimed.sum(), support.sum())), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "mean_average_precision": round(float(np.nanmean(ap)) if (~np.isnan(ap)).any() else 0, 4),
        "hamming_accuracy": round(float(np.mean(predicted == truth)), 4),
        "loss": round(float(loss), 4),
        "thresholds": {name: round(float(t), 4) for name, t in zip(class_names, thresholds)},
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "average_precision": None if np.isnan(ap[i]) else round(float(ap[i]), 4),
                "support": int(support[i]),
                "threshold": round(float(thresholds[i]), 4),
            }
            for i, name in enumerate(class_names)
        },
    }
