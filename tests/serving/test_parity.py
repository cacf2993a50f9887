"""The parity check that stands between an export and its publication."""

from __future__ import annotations

import pytest

from sft_tf.serving import parity
from tests.helpers import tiny_classifier

CLASSES = ["cat", "dog", "fox"]


def test_verify_export_catches_a_different_model(published):
    path = published
    other = tiny_classifier(3, seed=1)
    with pytest.raises(RuntimeError, match="differs from the trained model"):
        parity.verify_export(path, other, 32, parity._sample_images(32))
