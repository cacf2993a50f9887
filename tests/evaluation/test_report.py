"""The evaluation report folder: metrics, figures and report.md that embeds them."""

import csv
import json

import numpy as np

from sft_tf.evaluation import fonts
from sft_tf.evaluation import report as report_lib

CLASSES = ["cat", "dog", "fox"]


def _blank_images(indices):
    return np.zeros((len(indices), 8, 8, 3), np.uint8)


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


def test_report_names_the_misclassified_files(tmp_path):
    labels = np.array([0, 1, 2, 0, 1])
    probabilities = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]]
    )
    files = [f"/data/test/{CLASSES[c]}/img{i}.jpg" for i, c in enumerate(labels)]
    metrics = report_lib.write_report(
        tmp_path, probabilities, labels, CLASSES, _blank_images, files=files
    )
    with open(tmp_path / "misclassified.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # Two mistakes, the surer first: img1 (dog called cat at 0.8), img3 (cat called dog at 0.7).
    assert [(r["file"], r["true"], r["predicted"], r["confidence"]) for r in rows] == [
        (files[1], "dog", "cat", "0.8000"),
        (files[3], "cat", "dog", "0.7000"),
    ]
    md = (tmp_path / "report.md").read_text()
    assert f"| `{files[1]}` | dog | cat | 0.800 |" in md and "## Most confidently wrong" in md
    assert "top" not in json.dumps(metrics)  # top-5 of 3 classes is always 1: left out
    assert "top" not in md.split("\n")[2]


def test_unsure_mistakes_are_not_called_confident():
    assert report_lib.wrong_title([0.41, 0.38]).startswith("Wrong test images, surest first")
    assert "0.41" in report_lib.wrong_title([0.41, 0.38])
    assert report_lib.wrong_title([0.9, 0.4]) == "Most confidently wrong test images"


def test_loss_axis_shows_plain_numbers(tmp_path, monkeypatch):
    """Losses that differ in the fourth decimal get plain tick labels, not "+1.098" offsets."""
    seen = []
    monkeypatch.setattr(report_lib, "_save", lambda fig, path: seen.append(fig) or path.name)
    history = {"loss": [1.09861, 1.09859, 1.09858], "accuracy": [0.33, 0.34, 0.33]}
    report_lib.plot_curves(history, None, tmp_path / "curves.png")
    (fig,) = seen
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.yaxis.get_major_formatter().get_offset() == ""
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert labels and all("e" not in label for label in labels)


def test_names_no_font_can_draw_are_numbered_in_figures(tmp_path):
    """CJK names: drawn with an installed font that has them, else numbered, with the markdown
    saying which number is which (on a machine without CJK fonts, like CI)."""
    names = ["猫", "犬", "狐"]
    labels = np.array([0, 1, 2, 0])
    probabilities = np.eye(3)[[1, 1, 2, 0]] * 0.9 + 0.1 / 3
    report_lib.write_report(tmp_path, probabilities, labels, names, _blank_images)
    shown, rc = fonts.figure_labels(names)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| 猫 |" in md  # the markdown always has the names themselves
    if rc:  # this machine has a CJK font: the figures use it
        assert shown == names and rc["font.family"][0] == fonts.DEFAULT_FAMILY
    else:
        assert shown == ["#0", "#1", "#2"] and "#0 = 猫, #1 = 犬, #2 = 狐" in md


def test_a_font_that_has_the_characters_is_used_as_fallback():
    """Script-letter maths symbols are not in DejaVu Sans but are in fonts matplotlib ships."""
    assert fonts.figure_labels(["cat", "кошка"]) == (["cat", "кошка"], {})
    shown, rc = fonts.figure_labels(["𝒜", "ℬ"])
    assert shown == ["𝒜", "ℬ"] and rc["font.family"][0] == fonts.DEFAULT_FAMILY
    assert rc["font.family"][1] != fonts.DEFAULT_FAMILY
