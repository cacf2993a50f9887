"""The multi-label loss: binary cross-entropy per label, with per-label positive weights.

Keras's `BinaryCrossentropy` has no per-label weight for positive targets, which is what class
weighting means when an image carries several labels (`data.class_weighting`): a rare label's
positives weigh more so that predicting "absent" everywhere stops paying. Without weights the
trainers use Keras's own loss; this one computes the same quantity with the weights applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="sft_tf")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Mean over labels of w_c^y * BCE(y_smoothed, p): `keras.losses.BinaryCrossentropy` (same
    label smoothing: y * (1 - s) + s / 2) with the positives of label c weighted by w_c.

    Soft targets (MixUp/CutMix mix the multi-hot rows) interpolate the weight: y * w_c + 1 - y.
    """

    def __init__(
        self,
        positive_weights: Sequence[float],
        label_smoothing: float = 0.0,
        name: str = "weighted_binary_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.positive_weights = [float(w) for w in positive_weights]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        smoothed = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        per_label = ops.binary_crossentropy(smoothed, y_pred)
        weights = ops.convert_to_tensor(self.positive_weights, dtype=y_pred.dtype)
        return ops.mean(per_label * (y_true * weights + 1.0 - y_true), axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "positive_weights": self.positive_weights,
            "label_smoothing": self.label_smoothing,
        }


def multi_label_loss(
    positive_weights: Sequence[float] | None, label_smoothing: float
) -> keras.losses.Loss:
    """Keras's binary cross-entropy, or the weighted one when there are positive weights."""
    if positive_weights is None:
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    return WeightedBinaryCrossentropy(positive_weights, label_smoothing)
