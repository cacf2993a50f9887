"""Backbone weight files and their backbone.json sidecar: round trip and mismatches."""

import json

import numpy as np
import pytest

from sft_tf.errors import UserError
from sft_tf.model import classifier
from sft_tf.model import weights as weights_lib
from tests.helpers import tiny_model


def test_backbone_weights_round_trip_and_mismatch(tmp_path):
    base = classifier.get_base(tiny_model())
    path = tmp_path / "backbone.weights.h5"
    weights_lib.save_backbone_weights(
        base, path, {"backbone": "MobileNetV2", "options": {"alpha": 0.35}}
    )
    assert json.loads((tmp_path / "backbone.json").read_text())["backbone"] == "MobileNetV2"
    loaded = classifier.get_base(tiny_model(weights=str(path)))
    for a, b in zip(base.weights, loaded.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    with pytest.raises(UserError, match="was made for MobileNetV2"):
        classifier.build_classifier("MobileNetV2", 3, 32, weights=str(path), alpha=0.5)
    (tmp_path / "backbone.json").unlink()  # without the sidecar Keras's own check must catch it
    with pytest.raises(UserError, match="does not fit MobileNetV2"):
        classifier.build_classifier("MobileNetV2", 3, 32, weights=str(path), alpha=0.5)
