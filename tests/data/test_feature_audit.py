"""Likely label errors and outliers from features, with cleanlab, on planted mistakes."""

import numpy as np

from sft_tf.data import feature_audit


def _clusters(seed=0):
    """Three tight clusters of 40 points in 8-D, 3 points given a wrong label, one far point."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, 8))
    labels = np.repeat(np.arange(3), 40)
    features = centres[labels] + rng.normal(0, 0.5, (120, 8))
    wrong = np.array([3, 50, 100])
    given = labels.copy()
    given[wrong] = (labels[wrong] + 1) % 3
    features = np.vstack([features, rng.normal(0, 0.5, (1, 8)) + 40])  # far from everything
    given = np.append(given, 0)
    return features.astype(np.float32), given, labels, wrong


def test_planted_label_errors_are_found_with_the_true_class_suggested():
    features, given, truth, wrong = _clusters()
    issues = feature_audit.label_issues(features[:120], given[:120], ["a", "b", "c"], seed=0)
    found = {i["index"] for i in issues}
    assert set(wrong.tolist()) <= found and len(found) <= 5
    for issue in issues:
        if issue["index"] in wrong:
            assert issue["suggested"] == "abc"[truth[issue["index"]]] and issue["score"] < 0.5
    assert issues == feature_audit.label_issues(features[:120], given[:120], "abc", seed=0)


def test_the_far_point_is_the_first_outlier():
    features, *_ = _clusters()
    scores = feature_audit.outlier_scores(features)
    assert feature_audit.top_outliers(scores)[0] == 120
    assert feature_audit.outlier_scores(features[:5]) is None
    assert feature_audit.top_outliers(None) == []
    # Scores all alike (features that cannot tell the images apart) single out nothing.
    assert feature_audit.top_outliers(np.full(100, 0.3679)) == []
    assert feature_audit.top_outliers(np.r_[0.1, np.full(99, 0.5)]) == [0]


def test_a_class_too_small_to_hold_out_gives_no_label_issues():
    features, given, *_ = _clusters()
    assert feature_audit.label_issues(features[:41], given[:41], "abc", seed=0) == []


def test_planted_multi_label_errors_are_found():
    rng = np.random.default_rng(1)
    truth = rng.random((150, 3)) < 0.4
    truth[truth.sum(1) == 0, 0] = True
    features = truth @ rng.normal(0, 4, (3, 8)) + rng.normal(0, 0.3, (150, 8))
    given = truth.copy()
    wrong = np.array([7, 60, 120])
    given[wrong, 1] = ~given[wrong, 1]  # one label flipped on each
    issues = feature_audit.multi_label_issues(features, given.astype(np.uint8), "abc", seed=0)
    found = {i["index"] for i in issues}
    assert set(wrong.tolist()) <= found and len(found) <= 10
    first = next(i for i in issues if i["index"] == 7)
    assert first["suggested"] == "|".join("abc"[c] for c in np.flatnonzero(truth[7]))
