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
    rows = [["image", "label"], [image, "dog; cat"], [image, " fox ;;fox"], [image, "cat"]]
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
