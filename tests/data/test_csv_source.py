"""CSV listings: relative and absolute paths (spaces, accents), splits sharing one class list,
multi-label cells, BOM headers, and the errors that name the row, column or split to fix."""

import csv

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data.csv_source import CsvColumns, load_csv
from sft_tf.errors import UserError
from tests.helpers import write_image

FIELD = "config.data.train"


def _write_csv(path, rows, encoding="utf-8"):
    """Writes `rows` (header first) with csv's default \\r\\n line endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(rows)
    return str(path)


def _load(path, split="", **options):
    field = "config.data.test" if split == "test" else FIELD
    return load_csv(path, split, f"csv:{path}" + (f":{split}" if split else ""), field, **options)


@pytest.fixture
def dataset(tmp_path):
    """tmp/data set/my images/été/<name>.png: four small real PNGs next to the CSVs' folder."""
    root = tmp_path / "data set"
    for i, name in enumerate(("chat 1", "chien 2", "renard 3", "chat 4")):
        write_image(
            root / "my images" / "été" / f"{name}.png", np.full((6, 8, 3), 40 * i, np.uint8)
        )
    return root


def test_relative_paths_with_spaces_and_accents_resolve(dataset):
    path = _write_csv(
        dataset / "labels.csv",
        [
            ["image", "label"],
            ["my images/été/chien 2.png", "dog"],
            ["my images/été/chat 1.png", "cat"],
            ["./my images/été/renard 3.png", "fox"],
        ],
    )
    examples = _load(path)
    assert examples.class_names == ("cat", "dog", "fox")
    assert examples.labels.dtype == np.int32
    assert examples.labels.tolist() == [1, 0, 2]  # the file's row order
    assert examples.paths.dtype.kind == "U"
    assert examples.paths[0] == str(dataset / "my images" / "été" / "chien 2.png")
    assert examples.origin == f"csv:{path}"
    assert examples.notes == ()
    assert tf.io.decode_png(tf.io.read_file(examples.paths[2])).shape == (6, 8, 3)


def test_absolute_paths_are_kept(dataset, tmp_path):
    image = dataset / "my images" / "été" / "chat 4.png"
    path = _write_csv(tmp_path / "elsewhere" / "list.csv", [["image", "label"], [image, "cat"]])
    assert _load(path).paths.tolist() == [str(image)]


def test_splits_share_one_class_list(dataset):
    path = _write_csv(
        dataset / "all.csv",
        [
            ["image", "label", "split"],
            ["my images/été/chat 1.png", "cat", "train"],
            ["my images/été/chien 2.png", "dog", "train"],
            ["my images/été/renard 3.png", "fox", "train"],
            ["my images/été/chat 4.png", "cat", "test"],
            ["my images/été/gone.png", "cat", "validation"],  # other splits' files are not checked
        ],
    )
    train, test = _load(path, "train"), _load(path, "test")
    assert train.class_names == test.class_names == ("cat", "dog", "fox")
    assert train.labels.tolist() == [0, 1, 2]
    assert test.labels.tolist() == [0]
    assert [p.rsplit("/", 1)[1] for p in test.paths] == ["chat 4.png"]
    with pytest.raises(UserError, match=r"1 image file\(s\) listed in .* row 6: .*gone.png"):
        _load(path)  # no split asked: every row is kept, and its files checked


def test_a_label_no_training_row_has_is_named_with_its_row(dataset):
    """A mistyped label in a test row would be a class nothing trains on."""
    path = _write_csv(
        dataset / "typo.csv",
        [
            ["image", "label", "split"],
            ["my images/été/chat 1.png", "cat", "train"],
            ["my images/été/chien 2.png", "dog", "train"],
            ["my images/été/renard 3.png", "dgo", "test"],
            ["my images/été/chat 4.png", "cat", "test"],
        ],
    )
    with pytest.raises(
        UserError, match=r"label 'dgo' of row 4 \(split 'test'\) .* is on no row of split 'train'"
    ):
        _load(path, "train")
    assert _load(path, "test").class_names == ("cat", "dgo", "dog")  # only training checks


def test_unknown_split_lists_the_values_present(dataset):
    path = _write_csv(
        dataset / "all.csv",
        [["image", "label", "split"]]
        + [["my images/été/chat 1.png", "cat", s] for s in ("train", "validation", "test")],
    )
    with pytest.raises(
        UserError, match=r"no row has split 'valid' \(values present: test, train, validation\)"
    ):
        _load(path, "valid")


def test_missing_columns_name_the_setting_and_the_columns_present(dataset):
    path = _write_csv(
        dataset / "cols.csv", [["file", "class"], ["my images/été/chat 1.png", "cat"]]
    )
    with pytest.raises(
        UserError, match=r"no image column 'image'.*'file', 'class'.*csv_image_column"
    ):
        _load(path)
    with pytest.raises(UserError, match=r"no label column 'label'.*csv_label_column"):
        _load(path, columns=CsvColumns(image="file"))
    examples = _load(path, columns=CsvColumns(image="file", label="class"))
    assert examples.class_names == ("cat",)
    with pytest.raises(UserError, match=r"no split column 'split'.*csv_split_column"):
        _load(path, "train", columns=CsvColumns(image="file", label="class"))


def test_missing_image_files_name_rows_and_count(dataset):
    path = _write_csv(
        dataset / "gone.csv",
        [
            ["image", "label"],
            ["my images/été/chat 1.png", "cat"],
            ["my images/été/ghost 1.png", "cat"],
            ["my images/été/chien 2.png", "dog"],
            ["my images/ghost 2.png", "dog"],
        ],
    )
    with pytest.raises(
        UserError,
        match=r"2 image file\(s\) listed in .*gone.csv do not exist, e.g. row 3: .*ghost 1.png, "
        r"row 5: .*ghost 2.png; relative paths are relative to the CSV's folder",
    ):
        _load(path)


def test_empty_cells_name_the_spreadsheet_row(dataset):
    image = "my images/été/chat 1.png"
    rows = [["image", "label"], [image, "cat"], [image, "cat"], [image, "  "], [image, ""]]
    path = _write_csv(dataset / "empty.csv", rows)
    with pytest.raises(
        UserError, match=r"row 4 of .*empty.csv has no label in column 'label' \(2 rows"
    ):
        _load(path)
    path = _write_csv(dataset / "noimage.csv", [["image", "label"], [image, "cat"], ["", "dog"]])
    with pytest.raises(UserError, match=r"row 3 of .*noimage.csv has no image path"):
        _load(path)
    path = _write_csv(dataset / "ragged.csv", [["image", "label"], [image, "cat"], [image]])
    with pytest.raises(
        UserError, match=r"row 3 of .*ragged.csv has 1 cells where the header has 2"
    ):
        _load(path)
    with pytest.raises(UserError, match=r"csv:.*nowhere.csv': .*nowhere.csv not found"):
        _load(str(dataset / "nowhere.csv"))


def test_multi_label_cells_become_multi_hot(dataset):
    image = "my images/été/chat 1.png"
    rows = [
        ["image", "label"],
        [image, "dog; cat"],
        ["my images/été/renard 3.png", " fox ;;fox"],
        ["my images/été/chat 4.png", "cat"],
    ]
    path = _write_csv(dataset / "multi.csv", rows)
    examples = _load(path, multi_label=True, delimiter=";")
    assert examples.class_names == ("cat", "dog", "fox")
    assert examples.labels.dtype == np.uint8
    assert examples.labels.tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 0]]
    path = _write_csv(dataset / "nolabel.csv", [*rows, [image, " ; "]])
    with pytest.raises(UserError, match=r"row 5 of .*nolabel.csv has no label"):
        _load(path, multi_label=True, delimiter=";")


def test_bom_and_whitespace_around_names_and_cells(dataset):
    path = dataset / "excel.csv"
    text = "\ufeff image , label \r\n my images/été/chat 4.png ,  cat \r\n\r\n"
    path.write_bytes(text.encode("utf-8"))
    examples = _load(str(path))
    assert examples.class_names == ("cat",)
    assert examples.paths.tolist() == [str(dataset / "my images" / "été" / "chat 4.png")]


def test_an_image_with_two_labels_names_both_rows(dataset):
    """Single-label: the same image (./ and all) on two rows with different labels."""
    rows = [
        ["image", "label", "split"],
        ["my images/été/chat 1.png", "cat", "train"],
        ["my images/été/chien 2.png", "dog", "train"],
        ["./my images/été/chat 1.png", "dog", "test"],  # another split: still one image
        ["my images/été/renard 3.png", "fox", "train"],
        ["my images/été/renard 3.png", "cat", "train"],
    ]
    path = _write_csv(dataset / "twice.csv", rows)
    with pytest.raises(UserError) as error:
        _load(path, "train")
    assert str(error.value) == (
        f"{FIELD}='csv:{path}:train': rows 2 and 4 of {path} give the image "
        "'./my images/été/chat 1.png' two labels, 'cat' and 'dog' (2 such rows in all); an "
        "image has one class: correct or delete one of the rows, or set "
        "config.data.multi_label=true if an image can show several classes"
    )
    # Multi-label, the rows of one image are one example with all their labels.
    examples = _load(path, "train", multi_label=True)
    assert examples.labels.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert [p.rsplit("/", 1)[1] for p in examples.paths] == [
        "chat 1.png",
        "chien 2.png",
        "renard 3.png",
    ]


def test_repeated_rows_are_kept_once_with_a_warning(dataset, capsys):
    rows = [
        ["image", "label"],
        ["my images/été/chat 1.png", "cat"],
        ["my images/été/chien 2.png", "dog"],
        ["my images/./été/chat 1.png", "cat"],
        ["my images/été/chien 2.png", "dog"],
        ["my images/été/chien 2.png", "dog"],
    ]
    path = _write_csv(dataset / "repeats.csv", rows)
    examples = _load(path)
    assert examples.labels.tolist() == [0, 1] and len(set(examples.paths)) == 2
    assert capsys.readouterr().out == (
        f"Warning: {FIELD}: 3 row(s) of {path} list an image again (e.g. row 4: 'my images/./"
        "été/chat 1.png', first on row 2); each image is kept once, with its one label\n"
    )
    rows[4][1] = "dog|cat"
    examples = _load(_write_csv(dataset / "tags.csv", rows), multi_label=True)
    assert examples.labels.tolist() == [[1, 0], [1, 1]]
    assert "with the labels of all its rows (1 of these rows add labels)" in capsys.readouterr().out


def test_one_row_joining_labels_in_a_single_label_csv_names_the_row(dataset):
    """'cat|dog' on one row would be a class of one image: missing from the other splits and
    from any hold-out, it used to surface as "no decodable images for class"."""
    rows = [
        ["image", "label", "split"],
        ["my images/été/chat 1.png", "cat", "train"],
        ["my images/été/chien 2.png", "dog", "train"],
        ["my images/été/renard 3.png", "cat|dog", "train"],
        ["my images/été/chat 4.png", "cat", "test"],
    ]
    path = _write_csv(dataset / "joined.csv", rows)
    for split in ("train", "test"):
        with pytest.raises(UserError) as error:
            _load(path, split)
        assert str(error.value).endswith(
            f"row 4 of {path} has the label 'cat|dog', which joins names with '|'; single-label, "
            "that is a class of its own with this one image: give the row one class, or set "
            "config.data.multi_label=true if an image can show several classes"
        )
    assert _load(path, "train", multi_label=True).class_names == ("cat", "dog")
    # On test rows only (two of them), it is a class no training row has: said as joined.
    rows[3][2] = "test"
    rows[4][1] = "cat|dog"
    with pytest.raises(UserError, match=r"split 'train' \(2 rows in all\); it joins names with"):
        _load(_write_csv(dataset / "joined_test.csv", rows), "train")
