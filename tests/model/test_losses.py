"""The multi-label loss: Keras's binary cross-entropy, with per-label weights of positives."""

import keras
import numpy as np
import pytest

from sft_tf.model import losses

Y = np.array([[1, 0, 1], [0, 0, 1], [0.3, 0.7, 0]], np.float32)  # the last row: mixed targets
P = np.array([[0.8, 0.3, 0.6], [0.1, 0.5, 0.9], [0.4, 0.2, 0.7]], np.float32)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_unit_weights_give_keras_binary_crossentropy(smoothing):
    keras_loss = keras.losses.BinaryCrossentropy(label_smoothing=smoothing)(Y, P)
    weighted = losses.WeightedBinaryCrossentropy([1, 1, 1], smoothing)(Y, P)
    np.testing.assert_allclose(float(weighted), float(keras_loss), rtol=1e-6)
    assert isinstance(losses.multi_label_loss(None, smoothing), keras.losses.BinaryCrossentropy)


def test_positive_weights_scale_only_the_positive_targets_and_round_trip():
    loss = losses.WeightedBinaryCrossentropy([3.0, 1.0, 0.5])
    eps = 1e-7
    p = np.clip(P, eps, 1 - eps)
    bce = -(Y * np.log(p) + (1 - Y) * np.log(1 - p))
    expected = np.mean(bce * (Y * np.array([3.0, 1.0, 0.5]) + 1 - Y))
    np.testing.assert_allclose(float(loss(Y, P)), expected, rtol=1e-5)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again.positive_weights == [3.0, 1.0, 0.5]
