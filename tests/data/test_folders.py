"""Folder listing: sorted classes, nested files, followed links and loops, ignored files."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sft_tf.data import sources as sources_lib
from sft_tf.errors import UserError
from tests import helpers
from tests.helpers import CLASS_COLOURS, write_image, write_pngs


def test_folder_lists_sorted_classes_and_nested_files(image_folders):
    examples = sources_lib.load_examples(f"folder:{image_folders['train']}")
    assert examples.class_names == tuple(sorted(CLASS_COLOURS))
    assert len(examples) == 48
    assert examples.counts().tolist() == [16, 16, 16]
    assert any("/nested/" in p for p in examples.paths)
    # Paths of a class live under that class's folder.
    for path, label in zip(examples.paths, examples.labels):
        assert f"/{examples.class_names[label]}/" in path


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        sources_lib.load_examples(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="no class sub-folders"):
        sources_lib.load_examples(f"folder:{tmp_path}")
    (tmp_path / "a").mkdir()
    write_image(tmp_path / "b" / "1.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=r"class folder .*/a has no images"):
        sources_lib.load_examples(f"folder:{tmp_path}")


def test_a_dataset_root_with_split_folders_is_refused_with_the_specs_to_use(tmp_path):
    """root/{train,val,test}/<class>/...: listed as classes, the model would learn the splits."""
    for split in ("train", "val", "test"):
        write_pngs(tmp_path / split / "cat", 2)
        write_pngs(tmp_path / split / "dog", 2)
    with pytest.raises(UserError) as error:
        sources_lib.load_examples(f"folder:{tmp_path}", "config.data.train")
    assert str(error.value) == (
        f"config.data.train='folder:{tmp_path}': the sub-folders of {tmp_path} (test, train, "
        "val) are a dataset's splits, each holding class folders, not classes; give each split "
        f"its own spec: --config.data.train=folder:{tmp_path / 'train'} "
        f"--config.data.validation=folder:{tmp_path / 'val'} "
        f"--config.data.test=folder:{tmp_path / 'test'}"
    )
    # pretrain has no validation split to suggest.
    with pytest.raises(UserError, match="give each split its own spec: --config.pretrain.train"):
        sources_lib.load_examples(f"folder:{tmp_path}", "config.pretrain.train")
    # Each split is a folder of classes as usual.
    assert sources_lib.load_examples(f"folder:{tmp_path / 'val'}").class_names == ("cat", "dog")
    # A root holding only its training split: one "class" would be no dataset either.
    shutil.rmtree(tmp_path / "val")
    shutil.rmtree(tmp_path / "test")
    with pytest.raises(UserError, match=f"spec: --config.data.train=folder:{tmp_path}/train$"):
        sources_lib.load_examples(f"folder:{tmp_path}", "config.data.train")


def test_classes_named_like_splits_are_classes_when_they_hold_images(tmp_path):
    """A class may be called "train" (railway photos): only split-named folders that all hold
    class folders are taken for a dataset's root."""
    write_pngs(tmp_path / "train", 2)
    write_pngs(tmp_path / "test", 2)
    assert sources_lib.load_examples(f"folder:{tmp_path}").class_names == ("test", "train")
    write_pngs(tmp_path / "trams" / "nested", 2)
    write_pngs(tmp_path / "test" / "nested", 2)
    write_pngs(tmp_path / "train" / "nested", 2)
    examples = sources_lib.load_examples(f"folder:{tmp_path}")
    assert examples.class_names == ("test", "train", "trams")


def test_folder_links_are_followed_once_and_loops_reported(tmp_path, capsys):
    root = tmp_path / "train"
    write_pngs(root / "Bag", 3)
    write_pngs(root / "Bag" / "sub", 1)
    write_pngs(root / "Shoe", 2)
    write_pngs(tmp_path / "elsewhere", 2)
    os.symlink(root / "Bag", root / "Bag" / "loop")  # back to its own class folder
    os.symlink("..", root / "Bag" / "sub" / "up")  # a relative loop, one level down
    os.symlink(root / "Bag" / "sub", root / "Bag" / "again")  # a second way into sub/
    os.symlink(tmp_path / "elsewhere", root / "Bag" / "more")  # a real extra folder: followed

    examples = sources_lib.load_examples(f"folder:{root}")

    # Bag: its 3 images, sub's 1 and the 2 behind the link to elsewhere, each listed once.
    assert examples.counts().tolist() == [3 + 1 + 2, 2]
    assert len(set(map(os.path.realpath, examples.paths))) == len(examples)
    bag = os.path.realpath(root / "Bag")
    loops = sorted(n for n in examples.notes if "loops" in n)
    assert loops == [
        f"Ignored a folder link that loops: {root}/Bag/loop -> {bag}",
        f"Ignored a folder link that loops: {root}/Bag/sub/up -> {bag}",
    ]
    # Folders are listed under their own path; the link is the second way in.
    assert (
        f"Ignored a folder link that leads to a folder already listed: {root}/Bag/again -> "
        f"{bag}/sub"
    ) in examples.notes
    assert not any("/again/" in p or "/loop/" in p for p in examples.paths)
    printed = capsys.readouterr().out.splitlines()
    assert set(examples.notes) <= set(printed)


def test_ignored_files_are_counted_by_reason(tmp_path, capsys):
    root = tmp_path / "train"
    write_pngs(root / "cat", 2)
    write_pngs(root / "dog", 1)
    tiff = helpers.pil_bytes(Image.fromarray(helpers.solid()), "TIFF")
    # TF cannot decode TIFF (and tensorflow-io is not a dependency): listed as unsupported.
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        tf.io.decode_image(tiff)
    for i in range(3):
        (root / "cat" / f"scan{i}.TIFF").write_bytes(tiff)
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_pngs(root / "cat" / ".thumbnails", 2)  # hidden folder inside a class
    write_pngs(root / ".Trash" / "old", 1)  # hidden folder where the classes are
    (root / "README.md").write_text("where these images come from")

    examples = sources_lib.load_examples(f"folder:{root}")

    assert examples.class_names == ("cat", "dog") and examples.counts().tolist() == [2, 1]
    summary = (
        f"Ignored 9 file(s) in folder:{root}: hidden 4; unsupported extension 4 (.tiff x3, "
        ".txt x1; TF cannot decode TIFF: convert to PNG); outside the class folders 1"
    )
    assert examples.notes == (summary,)
    assert summary in capsys.readouterr().out.splitlines()
    # A class left with no images says what was there instead.
    shutil.rmtree(root / "dog")
    (root / "dog").mkdir()
    (root / "dog" / "only.tif").write_bytes(tiff)
    with pytest.raises(UserError, match=r"dog has no images .*ignored there: unsupported exten"):
        sources_lib.load_examples(f"folder:{root}")


def test_folder_links_out_of_their_class_folder_are_skipped_and_counted(tmp_path, capsys):
    """A link from one class folder to the root or another class would relabel images."""
    root = tmp_path / "train"
    for name, count in (("circle", 3), ("square", 4), ("triangle", 5)):
        write_pngs(root / name, count)
    write_pngs(tmp_path / "extra", 2)
    os.symlink("..", root / "circle" / "loop")  # up to the split root: square, triangle
    os.symlink("../triangle", root / "square" / "tri")  # into another class
    os.symlink(tmp_path, root / "triangle" / "up")  # above the root (and back into it)
    os.symlink(tmp_path / "extra", root / "square" / "extra")  # outside the root: followed
    write_pngs(root / ".cache", 1)
    os.symlink("../square", root / ".cache" / "sq")  # hidden: never labelled, never recounted

    examples = sources_lib.load_examples(f"folder:{root}")

    assert examples.counts().tolist() == [3, 4 + 2, 5]
    for path, label in zip(examples.paths, examples.labels):
        name = examples.class_names[label]
        assert os.path.realpath(path).startswith(str(root / name) + "/") or "/extra/" in path
    real = os.path.realpath
    tail = "; only links within a class folder or to folders outside the split root are followed"
    assert [n for n in examples.notes if n.startswith("Warning")] == [
        f"Warning: skipped a folder link that leads into class folder 'square': {root}/.cache/sq"
        f" -> {real(root / 'square')} (following it, 4 image(s) there would have been counted "
        "as hidden)" + tail,
        f"Warning: skipped a folder link that leads up to the split root: {root}/circle/loop -> "
        f"{real(root)} (following it, 9 image(s) there would have been labelled 'circle')" + tail,
        f"Warning: skipped a folder link that leads into class folder 'triangle': {root}/square/"
        f"tri -> {real(root / 'triangle')} (following it, 5 image(s) there would have been "
        "labelled 'square')" + tail,
        # tmp_path holds extra/ (2) and the root's other classes (3 + 4).
        f"Warning: skipped a folder link that leads to a folder above the split root: {root}/"
        f"triangle/up -> {real(tmp_path)} (following it, 9 image(s) there would have been "
        "labelled 'triangle')" + tail,
    ]
    assert set(examples.notes) <= set(capsys.readouterr().out.splitlines())
