"""Metrics against hand-computed values."""

import numpy as np
import pytest

from sft_tf import evaluate


def test_classification_metrics_by_hand():
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]], np.float32
    )
    labels = np.array([0, 1, 1, 2])
    m = evaluate.classification_metrics(probabilities, labels, ["a", "b", "c"], top_k=2)
    assert m["accuracy"] == 0.75 and m["top2_accuracy"] == 1.0 and m["examples"] == 4
    assert m["per_class_recall"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    expected_loss = -np.mean(np.log([0.7, 0.8, 0.4, 0.5]))
    assert m["loss"] == pytest.approx(expected_loss, abs=1e-4)
