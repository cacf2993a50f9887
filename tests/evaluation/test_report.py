"""The evaluation report folder: metrics, figures and report.md that embeds them."""

import json

import numpy as np

from sft_tf.evaluation import report as report_lib

CLASSES = ["cat", "dog", "fox"]


def test_report_folder_has_every_part(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    probabilities = rng.dirichlet([1, 1, 1], 60)
    probabilities[:30, :] = 0.05
    probabilities[np.arange(30), labels[:30]] = 0.9  # half right, half random
    images = rng.integers(0, 256, (60, 24, 24, 3), dtype=np.uint8)
    asked = []

    def load_images(indices):
        asked.append(list(indices))
        return images[indices]

    history = {"loss": [1.0, 0.8, 0.7, 0.5], "accuracy": [0.4, 0.5, 0.6, 0.7]}
    history["val_loss"] = [1.1, 0.9, 0.8, 0.7]
    metrics = report_lib.write_report(
        tmp_path / "report", probabilities, labels, CLASSES, load_images, history, phase_switch=2
    )
    folder = tmp_path / "report"
    for name in ("confusion_matrix", "reliability", "confidently_wrong", "curves"):
        png = (folder / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000, name
        assert f"({name}.png)" in (folder / "report.md").read_text()
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved == metrics and set(saved["per_class"]) == set(CLASSES)
    matrix = json.loads((folder / "confusion_matrix.json").read_text())["matrix"]
    assert np.sum(matrix) == 60
    # Only wrong images were drawn, the most confident first, at most a grid's worth.
    predicted = probabilities.argmax(-1)
    (drawn,) = asked
    assert all(predicted[i] != labels[i] for i in drawn) and len(drawn) <= report_lib.WRONG_GRID
    confidence = probabilities[drawn, predicted[drawn]]
    assert list(confidence) == sorted(confidence, reverse=True)
    md = (folder / "report.md").read_text()
    assert "| **macro avg** |" in md and f"Accuracy **{metrics['accuracy']:.4f}**" in md


def test_report_without_mistakes_or_history(tmp_path):
    labels = np.array([0, 1, 2])
    probabilities = np.eye(3)[labels] * 0.9 + 0.1 / 3

    def never(indices):
        raise AssertionError("no wrong images to load")

    report_lib.write_report(tmp_path, probabilities, labels, CLASSES, never)
    assert not (tmp_path / "confidently_wrong.png").exists()
    assert not (tmp_path / "curves.png").exists()
    assert (tmp_path / "report.md").is_file()
