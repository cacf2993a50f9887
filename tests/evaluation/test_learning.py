"""The two signs that a phase learned nothing, against hand-computed bands."""

import numpy as np
import pytest

from sft_tf.evaluation import learning


def test_majority_band_is_two_standard_errors():
    labels = np.array([0] * 6 + [1] * 6 + [2] * 6)  # 18 images, a third each
    share, band = learning.majority_band(labels)
    assert share == pytest.approx(1 / 3) and band == pytest.approx(2 * np.sqrt(2 / 9 / 18))


def test_accuracy_within_noise_of_the_majority_class_warns():
    labels = np.array([0] * 80 + [1] * 20)  # always answering 0 scores 0.8 (band 0.08)
    warning = learning.accuracy_warning("phase1", "test", 0.85, labels)
    assert warning.startswith("phase1: test accuracy 0.8500 is within noise of always")
    assert "(0.8000 ± 0.0800 on 100 images)" in warning
    assert learning.accuracy_warning("phase1", "test", 0.95, labels) is None
    assert learning.accuracy_warning("phase2", "test", 0.2, np.zeros((4, 3))) is None  # multi


def test_a_loss_that_did_not_fall_warns():
    assert learning.loss_warning("phase2", [1.0986, 1.0987, 1.0986]).startswith(
        "phase2: the training loss did not fall (1.0986 in its first epoch, 1.0986 in its last)"
    )
    assert learning.loss_warning("phase2", [1.1, 0.9]) is None
    assert learning.loss_warning("phase2", [1.1]) is None  # one epoch: no trend to judge
    assert learning.loss_warning("phase1", [1.1, float("nan")]) is not None


def test_the_hint_depends_on_the_base():
    assert "random weights" in learning.hint(random_base=True)
    assert "phase2.unfreeze_blocks" in learning.hint(random_base=False)
