"""data.exclude: the listed images are left out, however their paths are written, and lines
that name nothing are found."""

import numpy as np
import pytest

from sft_tf.data import examples as examples_lib
from sft_tf.data import exclude
from sft_tf.errors import UserError


def _examples(*paths):
    return examples_lib.Examples(("a", "b"), np.arange(len(paths)) % 2, paths=np.array(paths))


def test_an_exclude_list_leaves_named_images_out(tmp_path):
    examples = _examples("/d/a/1.png", "/d/b/2.png", "/d/a/3.png")
    listed = tmp_path / "exclude.txt"
    listed.write_text("# reviewed\n/d/b/2.png\n\n/elsewhere.png\n")
    excluded = exclude.read_list(str(listed), "f")
    assert exclude.without(examples, excluded).names() == ["/d/a/1.png", "/d/a/3.png"]
    assert exclude.unmatched(excluded, [examples]) == ["/elsewhere.png"]
    with pytest.raises(UserError, match="config.data.exclude='/nope.txt': no such file"):
        exclude.read_list("/nope.txt", "config.data.exclude")


def test_relative_and_absolute_paths_of_one_file_match(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absolute = _examples(
        str(tmp_path / "data" / "a" / "1.png"), str(tmp_path / "data" / "b" / "2.png")
    )
    relative = _examples("data/a/1.png", "./data/b/2.png")
    assert exclude.without(absolute, {"data/b/2.png"}).names() == [str(tmp_path / "data/a/1.png")]
    assert exclude.without(relative, {str(tmp_path / "data" / "a" / "1.png")}).names() == [
        "./data/b/2.png"
    ]
    assert exclude.unmatched({"data/a/1.png", "data/c/9.png"}, [absolute]) == ["data/c/9.png"]
    # Record sources are named `origin #position`: compared as written.
    records = examples_lib.Examples(
        ("a",), np.zeros(2, int), origin="tfrecord:x", positions=np.arange(2)
    )
    assert exclude.without(records, {"tfrecord:x #1"}).names() == ["tfrecord:x #0"]
