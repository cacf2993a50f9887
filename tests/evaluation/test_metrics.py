"""Metrics against hand-computed values."""

import numpy as np
import pytest

from sft_tf.evaluation import metrics as metrics_lib


def test_classification_metrics_by_hand():
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]], np.float32
    )
    labels = np.array([0, 1, 1, 2])
    m = metrics_lib.classification_metrics(probabilities, labels, ["a", "b", "c"], top_k=2)
    assert m["accuracy"] == 0.75 and m["top2_accuracy"] == 1.0 and m["examples"] == 4
    assert m["per_class_recall"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    expected_loss = -np.mean(np.log([0.7, 0.8, 0.4, 0.5]))
    assert m["loss"] == pytest.approx(expected_loss, abs=1e-4)


def test_top_k_left_out_when_it_cannot_miss():
    """With k >= the class count every label is in the top k: the number would say nothing."""
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], np.float32)
    for k in (3, 5):
        m = metrics_lib.classification_metrics(probabilities, np.array([0, 2]), "abc", top_k=k)
        assert not [key for key in m if key.startswith("top")], k


def test_precision_f1_averages_and_calibration_by_hand():
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]], np.float32
    )
    labels = np.array([0, 1, 1, 2])
    m = metrics_lib.classification_metrics(probabilities, labels, ["a", "b", "c"], top_k=2)
    # a: predicted twice, right once -> precision 0.5, recall 1, F1 2/3.
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert m["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["macro_avg"]["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, abs=1e-4)
    assert m["weighted_avg"]["recall"] == pytest.approx((1 + 2 * 0.5 + 1) / 4, abs=1e-4)
    # Bins (15 wide): 0.7 right, 0.8 right, 0.5 wrong, 0.5 right.
    # ECE = 1/4*|1-0.7| + 1/4*|1-0.8| + 2/4*|0.5-0.5| = 0.125
    assert m["ece"] == pytest.approx(0.125, abs=1e-4)
    assert sum(b["count"] for b in m["calibration_bins"]) == 4


def test_perfectly_calibrated_predictions_have_zero_ece():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 20000)
    confidence = rng.uniform(0.5, 1.0, 20000)
    # Right with probability equal to the stated confidence.
    right = rng.uniform(size=20000) < confidence
    predicted = np.where(right, labels, 1 - labels)
    probabilities = np.zeros((20000, 2))
    probabilities[np.arange(20000), predicted] = confidence
    probabilities[np.arange(20000), 1 - predicted] = 1 - confidence
    ece, _ = metrics_lib.calibration(probabilities, labels)
    assert ece < 0.02


def test_fit_temperature_recovers_an_overconfident_models_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    true = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in true])
    # The model's probabilities are 3x too sharp: the fitted temperature undoes that.
    overconfident = metrics_lib.apply_temperature(true, 1 / 3)
    temperature = metrics_lib.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    calibrated = metrics_lib.apply_temperature(overconfident, temperature)
    assert (
        metrics_lib.calibration(calibrated, labels)[0]
        < metrics_lib.calibration(overconfident, labels)[0]
    )
    np.testing.assert_array_equal(calibrated.argmax(-1), overconfident.argmax(-1))
