"""Multi-label scores and the per-label thresholds tuned on validation data."""

import numpy as np

from sft_tf.evaluation import multilabel

NAMES = ["sky", "tree", "car"]


def _scores(n, seed):
    """Labels and probabilities where 'tree' is always under-confident (its positives score
    0.25-0.45, negatives 0.0-0.2): 0.5 misses every tree; a tuned threshold finds them."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    p = np.where(labels, rng.uniform(0.55, 0.95, (n, 3)), rng.uniform(0.05, 0.45, (n, 3)))
    p[:, 1] = np.where(labels[:, 1], rng.uniform(0.25, 0.45, n), rng.uniform(0.0, 0.2, n))
    return p.astype(np.float32), labels


def test_thresholds_tuned_on_validation_beat_one_half_on_test():
    val_p, val_y = _scores(200, 0)
    test_p, test_y = _scores(200, 1)
    tuned = multilabel.tune_thresholds(val_p, val_y)
    assert 0.2 <= tuned[1] <= 0.25  # between the under-confident positives and the negatives
    at_half = multilabel.multilabel_metrics(test_p, test_y, NAMES)
    at_tuned = multilabel.multilabel_metrics(test_p, test_y, NAMES, tuned)
    assert at_half["per_class"]["tree"]["f1"] == 0.0
    assert at_tuned["per_class"]["tree"]["f1"] == 1.0
    assert at_tuned["macro_f1"] > at_half["macro_f1"] + 0.3
    assert at_tuned["exact_match"] > at_half["exact_match"]
    # Average precision ranks, it does not threshold: the same either way.
    assert at_half["mean_average_precision"] == at_tuned["mean_average_precision"] == 1.0


def test_metrics_by_hand_and_a_label_without_positives():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    p = np.array([[0.9, 0.6, 0.1], [0.4, 0.8, 0.2], [0.7, 0.3, 0.3], [0.2, 0.1, 0.6]])
    m = multilabel.multilabel_metrics(p, labels, NAMES)
    sky = m["per_class"]["sky"]  # predicted: rows 0, 2; true: rows 0, 1
    assert (sky["precision"], sky["recall"], sky["f1"], sky["support"]) == (0.5, 0.5, 0.5, 2)
    assert m["per_class"]["car"]["average_precision"] is None  # no positives: undefined
    assert m["per_class"]["car"]["f1"] == 0.0
    # Decisions: 12, right: sky 2, tree 2, car 3 -> 7; exact rows: none.
    assert m["hamming_accuracy"] == round(7 / 12, 4) and m["exact_match"] == 0.0
    # micro F1: TP 2, predicted 5, positives 4.
    assert m["micro_f1"] == round(2 * 2 / 9, 4)
    assert m["thresholds"] == {"sky": 0.5, "tree": 0.5, "car": 0.5}
    assert multilabel.tune_thresholds(p, labels)[2] == multilabel.DEFAULT_THRESHOLD
