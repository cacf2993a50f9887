"""Did a phase learn anything? Two signs that it did not, checked at the end of each phase.

- Its accuracy is within noise of always answering the most common class: at most that class's
  share plus two binomial standard errors, sqrt(p (1 - p) / n), on the n images scored. On a
  small split the band is wide, and the warning says so by quoting it.
- Its training loss did not fall: the last epoch's loss is not 1% below the first's.

A run from random weights with a frozen base shows both (the frozen features are noise), as
does a learning rate far too high or too low. The checks warn; they never stop a run.
"""

from __future__ import annotations

import math

import numpy as np

LOSS_DROP = 0.01  # the relative fall in training loss that counts as learning
STANDARD_ERRORS = 2.0  # the width of the "within noise" band


def majority_band(labels: np.ndarray) -> tuple[float, float]:
    """(share of the most common class, two standard errors of an accuracy near it)."""
    labels = np.asarray(labels)
    share = float(np.bincount(labels).max() / len(labels))
    return share, STANDARD_ERRORS * math.sqrt(share * (1 - share) / len(labels))


def accuracy_warning(phase: str, split: str, accuracy: float, labels: np.ndarray) -> str | None:
    """A warning when `accuracy` on `split` is within noise of the majority-class rate."""
    if labels is None or not len(labels) or np.ndim(labels) != 1:
        return None
    share, band = majority_band(labels)
    if accuracy > share + band:
        return None
    return (
        f"{phase}: {split} accuracy {accuracy:.4f} is within noise of always answering the most "
        f"common class ({share:.4f} ± {band:.4f} on {len(labels)} images): the model may have "
        "learned nothing"
    )


def loss_warning(phase: str, losses) -> str | None:
    """A warning when the training loss of a phase's epochs did not fall."""
    losses = [float(v) for v in losses]
    if len(losses) < 2:
        return None
    if all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] * (1 - LOSS_DROP):
        return None
    return (
        f"{phase}: the training loss did not fall ({losses[0]:.4f} in its first epoch, "
        f"{losses[-1]:.4f} in its last): the model may have learned nothing"
    )


def random_frozen_base(weights: str, unfreeze_blocks: int, batchnorm: str) -> bool:
    """Whether the base starts from random weights (`model.weights` empty) and is not trained
    whole (every block open with BatchNorm training), so frozen parts compute noise."""
    return not weights and not (unfreeze_blocks == -1 and batchnorm == "train")


def hint(random_base: bool) -> str:
    """What to try, for a base with random weights (`model.weights` empty) or a pretrained one."""
    if random_base:
        return (
            "a frozen base with random weights computes random features: start from a "
            "pretrained base (sft-tf pretrain, or model.weights=imagenet), or train the whole "
            "network (phase1.epochs=0 phase2.unfreeze_blocks=-1 phase2.batchnorm=train)"
        )
    return (
        "the base's features may not suit these images: open more blocks "
        "(phase2.unfreeze_blocks, -1 for all), train longer, or try another learning rate"
    )
