"""The dataset audit on real folders: counts, bad files, odd formats, duplicates, leakage, CLI."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data import audit as audit_lib
from sft_tf.data import examples as examples_lib
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources as sources_lib
from tests import helpers
from tests.helpers import REPO, sft_tf


def _scan(spec):
    examples = sources_lib.load_examples(spec)
    return examples, scan_lib.scan_images(examples)


def test_audit_counts_formats_bad_files_duplicates_and_leakage(tmp_path):
    planted = helpers.write_messy_folder(tmp_path / "train", per_class=6)
    gray = tf.io.encode_png(np.full((50, 70, 1), 90, np.uint8)).numpy()
    (tmp_path / "train" / "dog" / "gray.png").write_bytes(gray)
    shutil.copy(tmp_path / "train" / "dog" / "000.jpg", tmp_path / "train" / "dog" / "copy.jpg")
    (tmp_path / "train" / "dog" / "scan.tif").write_bytes(b"II*\0")  # TIFF: ignored, and said
    helpers.write_messy_folder(tmp_path / "test", per_class=2)  # 000.jpg, 001.png again
    train, train_scan = _scan(f"folder:{tmp_path / 'train'}")
    test, test_scan = _scan(f"folder:{tmp_path / 'test'}")

    report = audit_lib.audit(
        {"train": train, "test": test}, {"train": train_scan, "test": test_scan}
    )

    s = report["splits"]["train"]
    assert s["examples"] == 18 + 7 + 3 + 2 and s["decodable"] == s["examples"] - 3
    # Decodable: cat 6 + 7 odd formats; dog 6 + gray + copy; fox 6 (bad files not counted).
    assert s["per_class"] == {"cat": 13, "dog": 8, "fox": 6}
    assert s["imbalance_ratio"] == round(13 / 6, 3) and s["empty_classes"] == []
    assert {b["where"]: b["reason"] for b in s["bad_files"]}.keys() == planted.keys()
    assert s["cmyk"] == 1 and s["grayscale"] == 1
    assert s["alpha"] == 1  # opaque_rgba.png stores an alpha channel
    assert s["height"] == [20, 50] and s["width"] == [28, 70]
    assert s["duplicate_images"] == 1
    ignored = f"Ignored 1 file(s) in folder:{tmp_path / 'train'}: unsupported extension 1 (.tif x1"
    [note] = s["ignored"]
    assert note.startswith(ignored)
    [group] = s["duplicates"]
    assert sorted(d["where"].rsplit("/", 1)[-1] for d in group) == ["000.jpg", "copy.jpg"]
    # The noise is drawn class after class, so only cat's first two test images repeat train's;
    # so do the 7 odd formats (same encoder, same bytes).
    assert report["leakage"]["train/test"]["count"] == 2 + 7
    assert any("test image(s) also in train" in p for p in report["problems"])
    text = "\n".join(audit_lib.describe(report))
    assert "bad file" in text and "truncated or corrupt JPEG" in text and "PROBLEM" in text


def test_single_class_and_empty_class_are_problems(tmp_path):
    helpers.write_messy_folder(tmp_path / "t", per_class=2)
    examples, scan = _scan(f"folder:{tmp_path / 't'}")
    only_fox = examples.take(np.flatnonzero(examples.labels == 2))
    only_fox = examples_lib.select_classes(only_fox, ["fox"], "classes")
    fox_scan = scan_lib.scan_images(only_fox)
    report = audit_lib.audit({"train": only_fox}, {"train": fox_scan})
    assert report["splits"]["train"]["per_class"] == {"fox": 2}
    assert any("only one class" in p for p in report["problems"])
    # The fox folder's third file is the planted text file: drop both good ones, fox is empty.
    keep = np.flatnonzero((examples.labels != 2) | ~scan.ok)
    report = audit_lib.audit(
        {"train": examples.take(keep)}, {"train": scan_lib.scan_images(examples.take(keep))}
    )
    assert report["splits"]["train"]["empty_classes"] == ["fox"]
    assert report["splits"]["train"]["imbalance_ratio"] is None
    assert any("no decodable images for class(es) ['fox']" in p for p in report["problems"])


@pytest.mark.slow  # four CLI audits, each building the base and its features: ~40 s
def test_audit_command_writes_json_and_exit_status(tmp_path):
    planted = helpers.write_messy_folder(tmp_path / "train", per_class=4)
    helpers.write_messy_folder(tmp_path / "test", per_class=1)
    # Mislabelled: dog-green images filed as cats, for the feature findings to list.
    for i in range(3):
        green = helpers.solid((30, 220, 30), 24 + i, 28)
        helpers.write_image(tmp_path / "train" / "cat" / f"green_{i}.png", green)
    args = [
        "audit",
        f"--config={REPO / 'configs' / 'tiny.py'}",
        f"--config.data.train=folder:{tmp_path / 'train'}",
    ]
    clean = sft_tf(*args, "--workdir=clean", cwd=tmp_path)
    report = json.loads((tmp_path / "clean" / "audit.json").read_text())
    listed = {b["where"] for b in report["splits"]["train"]["bad_files"]}
    assert listed == set(planted) and report["problems"] == []
    for path in planted:
        assert path in clean.stdout
    # The base's-eye findings: every entry names an image of the split; the suggestions file
    # lists them for review, and data.exclude takes it back.
    for key in ("label_issues", "outliers", "near_duplicates"):
        assert key in report
    assert all(o["where"].startswith(str(tmp_path / "train")) for o in report["outliers"])
    assert "likely label error(s) in train" in clean.stdout and "outlier(s)" in clean.stdout
    assert (tmp_path / "clean" / "audit.md").read_text().startswith("# Audit of tiny")
    suggested = (tmp_path / "clean" / "exclude_suggested.txt").read_text().split()
    assert suggested and set(suggested) <= {o["where"] for o in report["outliers"]} | {
        i["where"] for i in report["label_issues"]
    }
    # Reviewed by hand: one line added that names no image is reported, not ignored.
    reviewed = tmp_path / "reviewed.txt"
    reviewed.write_text("\n".join([*suggested, "train/cat/no_such.png"]) + "\n")
    again = sft_tf(*args, f"--config.data.exclude={reviewed}", "--workdir=excluded", cwd=tmp_path)
    assert f"left out {len(suggested)} image(s)" in again.stdout
    assert "Warning: 1 line(s) of" in again.stdout
    assert "(e.g. train/cat/no_such.png)" in again.stdout
    leaky = sft_tf(
        *args,
        f"--config.data.test=folder:{tmp_path / 'test'}",
        "--workdir=leaky",
        cwd=tmp_path,
        check=False,
    )
    assert leaky.returncode == 1, leaky.stderr
    assert "PROBLEM" in leaky.stdout and "also in train" in leaky.stdout
    assert json.loads((tmp_path / "leaky" / "audit.json").read_text())["problems"]


def test_one_file_under_two_classes_is_a_problem_that_stops_training(tmp_path):
    """A file link (or hard link) in another class folder trains one image both ways."""
    from sft_tf.errors import UserError
    from sft_tf.training import screening

    root = tmp_path / "train"
    helpers.write_pngs(root / "circle", 3)
    helpers.write_pngs(root / "square", 2)
    os.symlink("../circle/1.png", root / "square" / "linked.png")
    os.link(root / "circle" / "2.png", root / "square" / "hard.png")
    examples, scan = _scan(f"folder:{root}")
    assert examples.counts().tolist() == [3, 4]

    report = audit_lib.audit({"train": examples}, {"train": scan})

    problem = (
        f"train: {root}/square/hard.png (class 'square') is the same file as {root}/circle/2.png "
        "(class 'circle') (2 files listed under two classes); an image has one class: keep it "
        "in one (delete the link or hard link, or the CSV row, of the wrong class)"
    )
    assert report["problems"] == [problem]
    summary = report["splits"]["train"]
    assert summary["same_file_count"] == 2
    assert {s["b"] for s in summary["same_file_classes"]} == {
        f"{root}/square/hard.png",
        f"{root}/square/linked.png",
    }
    assert (
        f"  one file under two classes: {root}/circle/1.png (circle) = {root}/square/linked.png "
        "(square)"
    ) in audit_lib.describe(report)
    with pytest.raises(UserError) as error:
        screening.screen_splits({"train": examples}, "skip", scan_lib.DEFAULT_MAX_IMAGE_PIXELS)
    assert str(error.value) == f"the data is not usable: {problem}"
    # Copies are not links: the exact-duplicate groups list them, and training goes on.
    os.remove(root / "square" / "linked.png")
    os.remove(root / "square" / "hard.png")
    shutil.copy(root / "circle" / "1.png", root / "square" / "copy.png")
    examples, scan = _scan(f"folder:{root}")
    assert audit_lib.audit({"train": examples}, {"train": scan})["problems"] == []


def test_imbalance_warning_names_both_classes_and_the_ratio():
    labels = np.asarray([0] * 30 + [1] * 3 + [2] * 4, np.int32)
    examples = examples_lib.Examples(("big", "small", "mid"), labels, origin="x")
    assert audit_lib.imbalance_warning(examples, 10.0) == (
        "Warning: the training split is imbalanced: class 'big' has 30 images, 10 times the 3 "
        "of class 'small', so accuracy can look good while 'small' is never predicted"
    )
    assert audit_lib.imbalance_warning(examples, 10.5) == ""
    multi = examples_lib.Examples(("a", "b"), np.asarray([[1, 0]] * 30 + [[1, 1]], np.uint8))
    assert audit_lib.imbalance_warning(multi, 10.0) == ""  # labels are scored one by one


@pytest.mark.slow
def test_audit_command_skips_relabelling_links_and_fails_on_a_file_under_two_classes(tmp_path):
    """The real CLI: the link to the root is skipped with a warning (the counts stay right),
    the file link across classes is a PROBLEM, and the exit status is 1. The link would have
    added dog's 5 images (its 4 and the linked one) and fox's 4."""
    root = tmp_path / "train"
    helpers.make_image_folder(root, per_class=4)
    os.symlink("..", root / "cat" / "loop")
    os.symlink("../cat/001.png", root / "dog" / "linked.png")
    result = sft_tf(
        "audit",
        f"--config={REPO / 'configs' / 'tiny.py'}",
        f"--config.data.train=folder:{root}",
        "--workdir=audit",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert (
        f"Warning: skipped a folder link that leads up to the split root: {root}/cat/loop -> "
        f"{os.path.realpath(root)} (following it, 9 image(s) there would have been labelled "
        "'cat')"
    ) in result.stdout
    assert (
        f"PROBLEM train: {root}/dog/linked.png (class 'dog') is the same file as "
        f"{root}/cat/001.png (class 'cat')"
    ) in result.stdout
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["splits"]["train"]["per_class"] == {"cat": 4, "dog": 4 + 1, "fox": 4}
    assert report["splits"]["train"]["same_file_count"] == 1
