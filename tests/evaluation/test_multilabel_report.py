"""The multi-label report folder: metrics, precision-recall curves, wrong calls, report.md."""

import json

import numpy as np

from sft_tf.evaluation import multilabel_report

NAMES = ["sky", "tree", "car", "road", "sign"]


def test_report_has_per_label_table_curves_and_the_worst_calls(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 5)) < 0.4).astype(np.uint8)
    labels[:, 4] = 0  # a label the test split never shows
    p = np.clip(labels * 0.4 + rng.uniform(0, 0.7, (40, 5)), 0, 1).astype(np.float32)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    drawn = []

    def load_images(indices):
        drawn.append(list(indices))
        return images[indices]

    thresholds = np.array([0.5, 0.55, 0.6, 0.5, 0.5], np.float32)
    history = {"loss": [0.7, 0.5, 0.4], "binary_accuracy": [0.6, 0.7, 0.8], "val_loss": [0.6] * 3}
    metrics = multilabel_report.write_multilabel_report(
        tmp_path, p, labels, NAMES, load_images, thresholds, history, phase_switch=1
    )
    report = (tmp_path / "report.md").read_text()
    for name in ("precision_recall", "false_positives", "false_negatives", "curves"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and f"({name}.png)" in report, name
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert "| tree | 0.550 |" in report and "| sign | 0.500 |" in report and "n/a" in report
    assert "confusion" not in report.lower()
    # The false positives drawn are wrong "present" calls, the most confident first.
    predicted = p >= thresholds
    wrong = p[predicted & (labels == 0)]
    assert len(drawn[0]) == min(16, len(wrong))
