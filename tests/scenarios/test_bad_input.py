"""Every bad config or input stops the CLI with one line, exit status 2, and nothing written."""

import json
import os
import shutil

import pytest

from tests.helpers import REPO, make_image_folder, sft_tf, write_pngs

TINY = f"--config={REPO / 'configs' / 'tiny.py'}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, image_folders):
    root = tmp_path_factory.mktemp("inputs")
    (root / "empty" / "cat").mkdir(parents=True)
    (root / "empty" / "dog").mkdir(parents=True)
    make_image_folder(root / "one_class", per_class=2)
    for extra in ("dog", "fox"):
        shutil.rmtree(root / "one_class" / extra)
    make_image_folder(root / "other_classes", per_class=2)
    (root / "other_classes" / "fox").rename(root / "other_classes" / "owl")
    (root / "blocker").write_text("a file where a folder should be")
    # A backbone weights file whose sidecar says it was made for another width.
    (root / "alpha05.weights.h5").write_bytes(b"not read: the sidecar check comes first")
    (root / "alpha05.json").write_text(
        json.dumps({"backbone": "MobileNetV2", "options": {"alpha": 0.5}})
    )
    (root / "no_fashion").mkdir()
    (root / "junk.weights.h5").write_bytes(b"not an HDF5 file")
    # One file in two class folders (a file link): it would train as both.
    make_image_folder(root / "same_file", per_class=2)
    os.symlink("../cat/001.png", root / "same_file" / "dog" / "linked.png")
    # The same images as training and test data, with data.on_leakage=drop.
    make_image_folder(root / "leaky", per_class=2)
    # CSVs: an image listed with two labels, and one row joining two labels.
    make_image_folder(root / "csv", per_class=2)
    rows = ["image,label", "cat/001.png,cat", "dog/001.jpg,dog", "fox/001.png,fox"]
    (root / "csv" / "twice.csv").write_text("\n".join([*rows, "cat/001.png,dog"]) + "\n")
    (root / "csv" / "joined.csv").write_text("\n".join([*rows, "fox/002.jpg,cat|dog"]) + "\n")
    return {"root": root, "train": f"folder:{image_folders['train']}"}


CASES = {
    "unknown key": (
        ["--config.phase2.learning_rat=0.1"],
        "config.phase2.learning_rat is not a config field; did you mean "
        "config.phase2.learning_rate?",
    ),
    "unknown backbone": (
        ["--config.model.backbone=ResNet51"],
        "'ResNet51' is not a keras.applications backbone; did you mean",
    ),
    "image too small": (
        ["--config.model.image_size=16"],
        "config.model.image_size=16 is below MobileNetV2's minimum 32; use >= 32",
    ),
    "too many blocks": (
        ["--config.phase2.unfreeze_blocks=40"],
        "config.phase2.unfreeze_blocks=40 but MobileNetV2 has 17 blocks",
    ),
    "zero learning rate": (["--config.phase1.learning_rate=0"], "learning_rate=0.0 must be > 0"),
    "zero batch": (["--config.data.global_batch_size=0"], "global_batch_size=0 must be >= 1"),
    "negative epochs": (["--config.phase2.epochs=-1"], "config.phase2.epochs=-1 must be between 0"),
    "20-digit epochs": (
        ["--config.phase1.epochs=99999999999999999999"],
        "config.phase1.epochs=99999999999999999999 must be between 0 and 10000",
    ),
    "NaN learning rate": (
        ["--config.phase2.learning_rate=nan"],
        "config.phase2.learning_rate=nan must be a finite number",
    ),
    "huge images": (["--config.model.image_size=100000"], "image_size=100000 is above 1024"),
    "not a weights file": (
        ["--config.model.weights={root}/junk.weights.h5"],
        "junk.weights.h5 does not fit MobileNetV2",
    ),
    # Both paths to the first batch: the phase-1 feature cache (no augmentation) and images.
    "batch above the data, cached features": (
        ["--config.data.global_batch_size=49"],
        "global_batch_size=49 is larger than the training split (48 images",
    ),
    "batch above the data, augmented": (
        ["--config.data.global_batch_size=49", "--config.data.augment=flip"],
        "global_batch_size=49 is larger than the training split (48 images",
    ),
    "missing config file": (["--config={root}/tny.py"], "no such file {root}/tny.py"),
    "config given twice": ([TINY, TINY], "--config is given 2 times; give one config file"),
    "not a number": (["--config.phase2.epochs=many"], "--config.phase2.epochs=many"),
    "missing folder": (["--config.data.train=folder:/no/such/dir"], "/no/such/dir"),
    "empty classes": (["--config.data.train=folder:{root}/empty"], "{root}/empty"),
    "one class": (["--config.data.train=folder:{root}/one_class"], "one_class"),
    "class mismatch": (
        ["--config.data.test=folder:{root}/other_classes"],
        "has different classes from the training data: missing ['fox']",
    ),
    "weights for another width": (
        ["--config.model.weights={root}/alpha05.weights.h5"],
        "was made for MobileNetV2 {{'alpha': 0.5}}",
    ),
    "unwritable workdir": (["--workdir={root}/blocker/run"], "--workdir="),
    "unwritable export dir": (["--config.export.dir={root}/blocker/out"], "config.export.dir="),
    "a file under two classes": (
        ["--config.data.train=folder:{root}/same_file"],
        "the data is not usable: train: {root}/same_file/dog/linked.png (class 'dog') is the "
        "same file as {root}/same_file/cat/001.png (class 'cat'); an image has one class",
    ),
    "a CSV image with two labels": (
        ["--config.data.train=csv:{root}/csv/twice.csv"],
        "rows 2 and 5 of {root}/csv/twice.csv give the image 'cat/001.png' two labels, 'cat' "
        "and 'dog'; an image has one class: correct or delete one of the rows, or set "
        "config.data.multi_label=true",
    ),
    "one CSV row joining labels": (
        ["--config.data.train=csv:{root}/csv/joined.csv"],
        "row 5 of {root}/csv/joined.csv has the label 'cat|dog', which joins names with '|'; "
        "single-label, that is a class of its own with this one image: give the row one "
        "class, or set config.data.multi_label=true",
    ),
    "leakage drop empties the training split": (
        [
            "--config.data.train=folder:{root}/leaky",
            "--config.data.test=folder:{root}/leaky",
            "--config.data.on_leakage=drop",
        ],
        "config.data.on_leakage='drop' removed all 6 decodable training images: each is "
        "identical to, or a near-duplicate of, a validation or test image",
    ),
    "missing Fashion-MNIST": (
        ["--config.data.train=fashion_mnist:train:{root}/no_fashion"],
        "Fashion-MNIST IDX files",
    ),
}


# One case of each kind runs in the default suite (a flag, the config file, a value, the data,
# the weights file, the batch, a path); every case runs in CI. Each is a whole CLI process
# (~4 s), and the same checks run in-process in tests/config/test_validation.py.
DEFAULT_SUITE = (
    "unknown key",
    "missing config file",
    "config given twice",
    "NaN learning rate",
    "class mismatch",
    "not a weights file",
    "batch above the data, cached features",
    "unwritable workdir",
    "a file under two classes",
    "a CSV image with two labels",
)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=() if case in DEFAULT_SUITE else pytest.mark.slow)
        for case in sorted(CASES)
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, inputs, tmp_path):
    args, message = CASES[case]
    root = inputs["root"]
    args = [a.format(root=root) for a in args]
    message = message.format(root=root)
    workdir = [a for a in args if a.startswith("--workdir")] or ["--workdir=run"]
    config = [] if any(a.startswith("--config=") for a in args) else [TINY]  # one --config
    result = sft_tf(
        "train",
        *config,
        f"--config.data.train={inputs['train']}",
        "--config.export.dir=exports",
        *[a for a in args if not a.startswith("--workdir")],
        *workdir,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("sft-tf: error: ")
    assert message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []  # no workdir, no exports


def test_a_validation_hold_out_without_a_class_is_said_before_training(tmp_path):
    """20 images vs 1: split:0.2 holds out none of the lone class (validation would score the
    big class alone). The warnings come with the data, before the model: here the batch check
    right after them stops the run, so no training is needed to see them."""
    write_pngs(tmp_path / "data" / "many", 20)
    write_pngs(tmp_path / "data" / "one", 1)
    result = sft_tf(
        "train",
        TINY,
        f"--config.data.train=folder:{tmp_path / 'data'}",
        "--config.data.validation=split:0.2",
        "--config.data.global_batch_size=32",
        "--workdir=run",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "Warning: config.data.validation='split:0.2' holds out no image of class(es) 'one': "
        "too few examples to spare one, so they stay in training only"
    ) in result.stdout
    assert (
        "Warning: the training split is imbalanced: class 'many' has 16 images, 16 times the 1 "
        "of class 'one'"
    ) in result.stdout
    assert "global_batch_size=32 is larger than the training split (17 images" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
