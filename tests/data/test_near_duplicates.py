"""Near-duplicates on real files: copies resized, re-encoded and brightened are found, distinct
pictures are not, and train/test copies stop a run unless data.on_leakage says otherwise."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance

from sft_tf.data import audit as audit_lib
from sft_tf.data import near_duplicates as near_lib
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources
from sft_tf.errors import UserError
from sft_tf.training import screening


def _picture(seed: int) -> Image.Image:
    """A smooth random picture: low-frequency colour fields, like a photo's large shapes."""
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((96, 96), Image.BICUBIC)


def _copies(image: Image.Image) -> dict[str, Image.Image]:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return {
        "resized": image.resize((150, 150), Image.BICUBIC),
        "jpeg75": Image.open(io.BytesIO(buffer.getvalue())),
        "brighter": ImageEnhance.Brightness(image).enhance(1.15),
    }


def _write(folder, images: dict) -> None:
    for name, image in images.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(path, "PNG")


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """train: 12 pictures a class, 2 classes; test: 3 new pictures a class plus a resized,
    a re-encoded and a brightened copy of three training pictures."""
    root = tmp_path_factory.mktemp("near")
    train = {f"{c}/{i}.png": _picture(10 * i + k) for k, c in enumerate("ab") for i in range(12)}
    test = {
        f"{c}/new{i}.png": _picture(1000 + 10 * i + k) for k, c in enumerate("ab") for i in range(3)
    }
    for kind, source in zip(("resized", "jpeg75", "brighter"), ("a/0", "a/1", "b/2")):
        test[f"{source[0]}/copy_{kind}.png"] = _copies(train[f"{source}.png"])[kind]
    _write(root / "train", train)
    _write(root / "test", test)
    splits = {
        name: sources.load_examples(f"folder:{root / name}", field=f"data.{name}")
        for name in ("train", "test")
    }
    return splits, {name: scan_lib.scan_images(split) for name, split in splits.items()}


def test_copies_are_found_and_distinct_pictures_are_not(leaky):
    splits, scans = leaky
    near = audit_lib.near_duplicate_pairs(splits, scans)
    found = {
        (splits["train"].where(p.a).split("train/")[1], splits["test"].where(p.b).split("test/")[1])
        for p in near["train/test"]
    }
    assert found == {
        ("a/0.png", "a/copy_resized.png"),
        ("a/1.png", "a/copy_jpeg75.png"),
        ("b/2.png", "b/copy_brighter.png"),
    }
    assert near["train"] == [] and near["test"] == []
    assert all(p.hash_distance <= near_lib.HASH_DISTANCE for p in near["train/test"])


def test_leakage_policy_fails_warns_or_drops(leaky, capsys):
    splits, scans = leaky
    report = audit_lib.audit(splits, scans)
    assert report["near_duplicates"]["train/test"]["count"] == 3
    [problem] = report["problems"]
    assert problem.startswith("3 test image(s) are near-duplicates") and "on_leakage" in problem
    assert audit_lib.audit(splits, scans, on_leakage="warn")["problems"] == []
    # A validation split with copies of training images inflates the validation score.
    as_validation = {"train": splits["train"], "validation": splits["test"]}
    scans_v = {"train": scans["train"], "validation": scans["test"]}
    [problem] = audit_lib.audit(as_validation, scans_v)["problems"]
    assert problem.startswith("3 validation image(s) are near-duplicates")
    with pytest.raises(UserError, match="near-duplicates"):
        screening.screen_splits(dict(splits), "skip", scan_lib.DEFAULT_MAX_IMAGE_PIXELS)
    kept = screening.screen_splits(dict(splits), "skip", scan_lib.DEFAULT_MAX_IMAGE_PIXELS, "drop")
    assert len(kept["train"]) == 24 - 3 and len(kept["test"]) == 9
    assert "Dropped 3 train image(s) that are also in a later split" in capsys.readouterr().out
    screening.screen_splits(dict(splits), "skip", scan_lib.DEFAULT_MAX_IMAGE_PIXELS, "warn")
    assert "Warning: 3 near-duplicate pair(s) across train/test" in capsys.readouterr().out


def test_identical_images_are_not_counted_twice():
    thumbs = np.stack(
        [scan_lib.thumbnail(tf.constant(np.asarray(_picture(s)))).numpy() for s in (1, 2)]
    )
    hashes = near_lib.perceptual_hashes(thumbs)
    assert near_lib.find_pairs(hashes, thumbs) == []  # two different pictures
    [pair] = near_lib.find_pairs(hashes[:1], thumbs[:1], hashes[:1], thumbs[:1])
    assert pair.hash_distance == 0 and pair.correlation == pytest.approx(1.0)
