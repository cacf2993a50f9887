"""What the base's pooled features say about a split: likely label errors and outliers.

Both use well-kept tools rather than code of ours: out-of-fold probabilities from a linear
classifier on the features (scikit-learn, k-fold, seeded) go to cleanlab's confident learning
(`find_label_issues`, ranked by self-confidence), and cleanlab's `OutOfDistribution` scores how
far each image's features are from their nearest neighbours (low: far from everything).
"""

from __future__ import annotations

import numpy as np

MAX_FOLDS = 5
MIN_OUTLIER_NEIGHBOURS = 10  # cleanlab's default k: fewer images than this, no outlier scores


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """float [N, C]: each image's class probabilities from a logistic regression that never saw
    it (stratified k-fold, k = min(5, the smallest class's count))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(MAX_FOLDS, int(np.bincount(labels).min()))
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return cross_val_predict(classifier, features, labels, cv=split, method="predict_proba")


def label_issues(features: np.ndarray, labels: np.ndarray, class_names, seed: int) -> list[dict]:
    """Likely label errors, surest first: {index, given, suggested, score} (score: cleanlab's
    label quality, 0 = surely wrong, 1 = surely right). [] when a class has fewer than two
    images (no fold could hold one out)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(class_names))
    if len(counts) < 2 or counts.min() < 2:
        return []
    probabilities = out_of_fold_probabilities(features, labels, seed)
    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probabilities)
    return [
        {
            "index": int(i),
            "given": class_names[labels[i]],
            "suggested": class_names[int(probabilities[i].argmax())],
            "score": round(float(quality[i]), 4),
        }
        for i in ranked
    ]


def multi_label_issues(
    features: np.ndarray, labels: np.ndarray, class_names, seed: int
) -> list[dict]:
    """Likely label errors of multi-hot `labels` [N, C], surest first: {index, given,
    suggested, score}, label sets written "a|b". Each label's out-of-fold probability comes
    from its own logistic regression (k-fold, seeded); cleanlab judges the sets. [] when some
    label has fewer than two positives or negatives."""
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels) > 0
    positives = labels.sum(0)
    if len(labels) < 4 or positives.min() < 2 or (len(labels) - positives).min() < 2:
        return []
    split = KFold(min(MAX_FOLDS, len(labels) // 2), shuffle=True, random_state=seed)
    probabilities = np.stack(
        [
            cross_val_predict(
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                features,
                labels[:, c],
                cv=split,
                method="predict_proba",
            )[:, 1]
            for c in range(labels.shape[1])
        ],
        axis=1,
    )
    given = [list(np.flatnonzero(row)) for row in labels]
    ranked = find_label_issues(
        given, probabilities, multi_label=True, return_indices_ranked_by="self_confidence"
    )
    quality = get_label_quality_scores(given, probabilities)

    def names(row) -> str:
        return "|".join(class_names[c] for c in np.flatnonzero(row))

    return [
        {
            "index": int(i),
            "given": names(labels[i]),
            "suggested": names(probabilities[i] >= 0.5),
            "score": round(float(quality[i]), 4),
        }
        for i in ranked
    ]


def outlier_scores(features: np.ndarray) -> np.ndarray | None:
    """float [N] in [0, 1], low for images far from every other (None with too few images)."""
    if len(features) <= MIN_OUTLIER_NEIGHBOURS:
        return None
    from cleanlab.outlier import OutOfDistribution

    # verbose=False: its "Fitting OOD estimator..." lines are noise among the audit's own.
    return OutOfDistribution().fit_score(features=np.asarray(features, np.float32), verbose=False)


def top_outliers(scores: np.ndarray | None, share: float = 0.01, most: int = 50) -> list[int]:
    """The lowest-scored images: the `share` farthest (at least 5, at most `most`), in order,
    of those scored below the split's median: an image as typical as half the split is no
    outlier (features that cannot tell images apart, e.g. a random base's, score all alike)."""
    if scores is None:
        return []
    count = min(most, max(5, int(len(scores) * share)), len(scores))
    typical = np.median(scores)
    return [int(i) for i in np.argsort(scores, kind="stable")[:count] if scores[i] < typical]
