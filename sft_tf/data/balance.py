"""Class imbalance: per-class weights (`data.class_weighting`) and class-balanced streams
(`data.resample`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from sft_tf.errors import UserError

RESAMPLING = ("none", "balanced")


def class_weights(
    text: str,
    class_names: Sequence[str],
    counts: np.ndarray,
    field: str = "class_weighting",
    examples: int | None = None,
) -> np.ndarray | None:
    """Per-class loss weights from `data.class_weighting`, or None for "none".

    Multi-label data (`examples` given: the number of training examples) gets per-label weights
    of the positive targets instead: "balanced" is negatives / positives of each label, so a
    label's positives carry as much loss as its negatives.

    Args:
      text: "none"; "balanced" (n / (classes * n_c): every class carries the same total weight
        and the mean weight over the training examples is 1); or "NAME:WEIGHT,..." (classes
        not listed keep 1).
      class_names: the training classes.
      counts: training examples per class.
      field: the config field, for messages.
    """
    text = text.strip()
    if text in ("", "none"):
        return None
    if text == "balanced" and examples is not None:
        positives = np.maximum(np.asarray(counts, np.float64), 1)
        return ((examples - positives) / positives).clip(min=1e-3).astype(np.float32)
    if text == "balanced":
        counts = np.asarray(counts, np.float64)
        return (counts.sum() / (len(counts) * np.maximum(counts, 1))).astype(np.float32)
    weights = np.ones(len(class_names), np.float32)
    for name, value in parse_class_weights(text, field):
        if name not in class_names:
            raise UserError(
                f"{field}={text!r}: no class {name!r}; the classes are {', '.join(class_names)}"
            )
        weights[list(class_names).index(name)] = value
    return weights


def parse_class_weights(text: str, field: str = "class_weighting") -> list[tuple[str, float]]:
    """Checks the syntax of a class weighting; returns (name, weight) pairs ([] for the
    keywords none and balanced)."""
    text = text.strip()
    if text in ("", "none", "balanced"):
        return []
    pairs = []
    for item in text.split(","):
        name, sep, value = item.rpartition(":")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or not math.isfinite(weight) or weight <= 0:
            raise UserError(
                f"{field}={text!r}: {item.strip()!r} is not NAME:WEIGHT with a weight > 0; "
                "use none, balanced, or e.g. 'Dress:4,Coat:1'"
            )
        pairs.append((name.strip(), weight))
    return pairs


def balanced_stream(streams: Sequence[tf.data.Dataset], seed: int | tf.Tensor) -> tf.data.Dataset:
    """An endless stream drawing from the per-class `streams` with equal probability.

    Each class's examples repeat on their own, so a rare class's images come round several
    times while a common class's are seen about once per epoch-worth of steps (oversampling,
    nothing is thrown away).
    """
    return tf.data.Dataset.sample_from_datasets([s.repeat() for s in streams], seed=seed)
