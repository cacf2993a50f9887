"""The classifier: its input/output contract, the families' preprocessing, the temperature."""

import keras
import numpy as np
import pytest

from sft_tf.evaluation import metrics as metrics_lib
from sft_tf.model import classifier
from tests.helpers import random_batch, tiny_model


def test_classifier_contract():
    model = tiny_model(num_classes=4)
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 32, 32, 3)
    out = model(random_batch(2)[0])
    assert out.shape == (2, 4) and out.dtype == "float32"
    np.testing.assert_allclose(np.sum(out, -1), 1.0, rtol=1e-5)
    # Only the head trains while the base is frozen: Dense kernel and bias.
    assert [w.path.split("/")[-1] for w in model.trainable_weights] == ["kernel", "bias"]
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


@pytest.mark.parametrize(
    "backbone, module",
    [("MobileNetV2", "mobilenet_v2"), ("VGG16", "vgg16"), ("DenseNet121", "densenet")],
)
def test_preprocess_layer_is_the_families_own(backbone, module):
    images = random_batch(4)[0]
    expected = getattr(keras.applications, module).preprocess_input(images.astype("float32"))
    got = classifier.Preprocess(backbone)(images)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-4)
    layer = classifier.Preprocess.from_config(classifier.Preprocess(backbone).get_config())
    assert layer.backbone == backbone


def test_temperature_layer_matches_the_numpy_scaling():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]], np.float32)
    layer = classifier.Temperature(2.5)
    np.testing.assert_allclose(
        layer(probabilities), metrics_lib.apply_temperature(probabilities, 2.5), atol=1e-6
    )
