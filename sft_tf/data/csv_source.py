"""`csv:` datasets: a CSV file with one row per image (its path and label, optionally the split
it belongs to), read locally or from gs://. Nothing is decoded here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from sft_tf.data.examples import Examples
from sft_tf.errors import UserError
from sft_tf.log import say

# The config field that names each column, for the fix in error messages.
COLUMN_SETTINGS = {
    "image": "config.data.csv_image_column",
    "label": "config.data.csv_label_column",
    "split": "config.data.csv_split_column",
}


@dataclasses.dataclass(frozen=True)
class CsvColumns:
    """Header names of the CSV columns to read.

    Attributes:
      image: the image path, relative to the CSV's folder unless absolute or a URL.
      label: the class name (several, joined by a delimiter, for multi-label data).
      split: the split a row belongs to (train, validation, test...); read only when a split
        is asked for.
    """

    image: str = "image"
    label: str = "label"
    split: str = "split"


@dataclasses.dataclass(frozen=True)
class _Row:
    """One data row: its spreadsheet row number (the header is row 1) and its stripped cells."""

    number: int
    image: str
    labels: tuple[str, ...]
    split: str


def load_csv(
    path: str,
    split: str,
    spec: str,
    field: str,
    columns: CsvColumns = CsvColumns(),
    multi_label: bool = False,
    delimiter: str = "|",
) -> Examples:
    """Lists the images and labels a CSV file holds, in the file's row order.

    Class names are the sorted labels of every row of the file, whatever its split, so that
    the splits of one CSV share one class list.

    An image on several rows (the same path once resolved against the CSV's folder): single-
    label, different labels anywhere in the file are an error, and repeats within the split
    are kept once with a warning. Multi-label, its rows in the split are merged into one
    example with every label they list (one row per image and label reads as meant), with a
    warning. The same image in rows of two splits is the leakage check's to report.

    Args:
      path: the CSV file, local or gs://, UTF-8 (with or without a BOM), header row first.
      split: keep only rows whose split cell is this value ("" keeps every row).
      spec: the spec it came from, for messages.
      field: the config field the spec came from, for messages.
      columns: header names of the image, label and split columns.
      multi_label: whether a label cell lists several classes separated by `delimiter`.
      delimiter: separates the classes of a label cell in multi-label mode; in single-label
        mode a label holding it is one class, with a warning (an error when one row alone has
        that label: most likely classes joined by mistake).

    Returns:
      `Examples` with paths; labels are int32 [N] class ids, or uint8 [N, C] multi-hot
      vectors in multi-label mode.

    Raises:
      UserError: the file, a column, a label, an image path or the split is missing or wrong,
        or an image has two labels in a single-label file.
    """
    if multi_label and not delimiter:
        raise ValueError("multi-label CSVs need a non-empty label delimiter")
    where = f"{field}={spec!r}"
    header, records = _read_table(path, where)
    wanted = {"image": columns.image, "label": columns.label}
    if split:
        wanted["split"] = columns.split
    index = {role: _column(header, name, role, path, where) for role, name in wanted.items()}
    rows = _parse_rows(header, records, index, multi_label, delimiter, path, where)
    folder = os.path.dirname(path)
    if not multi_label:
        _check_one_label_per_image(rows, folder, path, where)
        _check_lone_joined_labels(rows, delimiter, path, where)
    class_names = sorted({name for row in rows for name in row.labels})
    every_row = rows
    if split:
        rows = _keep_split(rows, split, path, where)
    if field.endswith(".train"):  # the split the run's classes are trained from
        if split:
            _check_every_class_trains(every_row, rows, split, path, where, delimiter, multi_label)
        if not multi_label:
            _warn_joined_labels(class_names, delimiter, field)
    rows = _once_per_image(rows, folder, path, field, multi_label)
    paths = [_resolve(folder, row.image) for row in rows]
    _check_images_exist(rows, paths, path, folder, where)
    return Examples(
        class_names=tuple(class_names),
        labels=_encode_labels(rows, class_names, multi_label),
        paths=np.asarray(paths),
        origin=spec,
    )


def _read_table(path: str, where: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The stripped header names and the (row number, cells) of every non-blank data row."""
    if not tf.io.gfile.exists(path):
        raise UserError(f"{where}: {path} not found")
    if tf.io.gfile.isdir(path):
        raise UserError(f"{where}: {path} is a folder; give the CSV file itself")
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UserError(
            f"{where}: {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
            "save it as CSV UTF-8"
        ) from e
    except tf.errors.OpError as e:
        raise UserError(f"{where}: cannot read {path} ({e.message[:200]})") from e
    # newline="" lets csv see \r\n, \r and \n endings and line breaks inside quoted cells.
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    records = []
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            # Blank rows (Excel leaves some at the end) still count: they are rows there too.
            if any(cell.strip() for cell in cells):
                records.append((number, [cell.strip() for cell in cells]))
    except csv.Error as e:
        raise UserError(f"{where}: row {number + 1} of {path} is not valid CSV ({e})") from e
    if not records:
        raise UserError(f"{where}: {path} is empty; its first row must name the columns")
    header = records.pop(0)[1]
    if not records:
        raise UserError(f"{where}: {path} has a header but no data rows")
    return header, records


def _column(header: list[str], name: str, role: str, path: str, where: str) -> int:
    """The position of column `name` in `header`.

    Raises:
      UserError: the column is missing or named twice, with the columns present and the
        config field that chooses it.
    """
    count = header.count(name)
    if count == 1:
        return header.index(name)
    setting = COLUMN_SETTINGS[role]
    if count > 1:
        raise UserError(
            f"{where}: {path} has {count} columns named {name!r}; rename all but one, or set "
            f"{setting} to another column"
        )
    present = ", ".join(repr(h) for h in header)
    hint = ""
    if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
        hint = " (its cells seem separated by ';' or tabs: save it comma-separated)"
    raise UserError(
        f"{where}: {path} has no {role} column {name!r}{hint}; columns present: {present}; "
        f"rename the column or set {setting}"
    )


def _parse_rows(
    header: list[str],
    records: list[tuple[int, list[str]]],
    index: dict[str, int],
    multi_label: bool,
    delimiter: str,
    path: str,
    where: str,
) -> list[_Row]:
    """Checks every row of the file (whatever its split) and keeps the cells that matter.

    Raises:
      UserError: naming the first row with the wrong number of cells, no label or no image
        path, and how many rows share the problem.
    """
    ragged = [number for number, cells in records if len(cells) != len(header)]
    if ragged:
        detail = f"has {len(dict(records)[ragged[0]])} cells where the header has {len(header)}"
        _raise_for_rows(ragged, detail, "give every row one cell per column", path, where)
    rows = []
    for number, cells in records:
        label = cells[index["label"]]
        names = [p.strip() for p in label.split(delimiter)] if multi_label else [label]
        labels = tuple(dict.fromkeys(name for name in names if name))  # in order, no repeats
        split = cells[index["split"]] if "split" in index else ""
        rows.append(_Row(number, cells[index["image"]], labels, split))
    unlabelled = [row.number for row in rows if not row.labels]
    if unlabelled:
        detail = f"has no label in column {header[index['label']]!r}"
        _raise_for_rows(unlabelled, detail, "fill in its class or delete the row", path, where)
    no_image = [row.number for row in rows if not row.image]
    if no_image:
        detail = f"has no image path in column {header[index['image']]!r}"
        _raise_for_rows(no_image, detail, "fill in the path or delete the row", path, where)
    return rows


def _raise_for_rows(numbers: list[int], detail: str, fix: str, path: str, where: str) -> None:
    """Raises UserError naming the first of the rows `numbers` and how many there are."""
    others = f" ({len(numbers)} rows in all)" if len(numbers) > 1 else ""
    raise UserError(f"{where}: row {numbers[0]} of {path} {detail}{others}; {fix}")


def _image_key(folder: str, image: str) -> str:
    """What two rows naming one image share: its path resolved against the CSV's folder, with
    ./ and .. folded (URLs as they are)."""
    resolved = _resolve(folder, image)
    return resolved if "://" in resolved else os.path.normpath(resolved)


def _check_one_label_per_image(rows: list[_Row], folder: str, path: str, where: str) -> None:
    """Raises UserError naming the first two rows that give one image different labels."""
    first: dict[str, _Row] = {}
    conflicts = []
    for row in rows:
        earlier = first.setdefault(_image_key(folder, row.image), row)
        if earlier.labels != row.labels:
            conflicts.append((earlier, row))
    if not conflicts:
        return
    a, b = conflicts[0]
    others = f" ({len(conflicts)} such rows in all)" if len(conflicts) > 1 else ""
    raise UserError(
        f"{where}: rows {a.number} and {b.number} of {path} give the image {b.image!r} two "
        f"labels, {a.labels[0]!r} and {b.labels[0]!r}{others}; an image has one class: "
        "correct or delete one of the rows, or set config.data.multi_label=true if an image can "
        "show several classes"
    )


def _check_lone_joined_labels(rows: list[_Row], delimiter: str, path: str, where: str) -> None:
    """Raises UserError for a single-label label that joins names with the delimiter and is on
    one row only: a class of one image, most likely several classes joined by mistake (it
    would then be missing from the other splits, or from the validation hold-out)."""
    if not delimiter:
        return
    counts = Counter(row.labels[0] for row in rows)
    lone = [row for row in rows if delimiter in row.labels[0] and counts[row.labels[0]] == 1]
    if lone:
        row = lone[0]
        others = f" ({len(lone)} such rows in all)" if len(lone) > 1 else ""
        raise UserError(
            f"{where}: row {row.number} of {path} has the label {row.labels[0]!r}, which joins "
            f"names with {delimiter!r}; single-label, that is a class of its own with this one "
            f"image{others}: give the row one class, or set config.data.multi_label=true if an "
            "image can show several classes"
        )


def _once_per_image(
    rows: list[_Row], folder: str, path: str, field: str, multi_label: bool
) -> list[_Row]:
    """One row per image, at its first row: repeats dropped (single-label: the labels agree,
    `_check_one_label_per_image`), multi-label rows merged into the union of their labels;
    a warning counts them."""
    merged: dict[str, _Row] = {}
    repeats = []
    for row in rows:
        key = _image_key(folder, row.image)
        first = merged.setdefault(key, row)
        if first is not row:
            repeats.append((first, row))
            labels = tuple(dict.fromkeys(first.labels + row.labels))
            merged[key] = dataclasses.replace(first, labels=labels)
    if not repeats:
        return rows
    a, b = repeats[0]
    if multi_label:
        added = sum(1 for first, row in repeats if set(row.labels) - set(first.labels))
        how = f"with the labels of all its rows ({added} of these rows add labels)"
    else:
        how = "with its one label"
    say(
        f"Warning: {field}: {len(repeats)} row(s) of {path} list an image again (e.g. row "
        f"{b.number}: {b.image!r}, first on row {a.number}); each image is kept once, {how}"
    )
    return list(merged.values())


def _keep_split(rows: list[_Row], split: str, path: str, where: str) -> list[_Row]:
    """The rows whose split cell is `split`; UserError listing the values present if none."""
    kept = [row for row in rows if row.split == split]
    if not kept:
        values = ", ".join(sorted({row.split or "(empty)" for row in rows}))
        raise UserError(
            f"{where}: {path}: no row has split {split!r} (values present: {values}); "
            "use one of those after csv:PATH:"
        )
    return kept


def _check_every_class_trains(
    every_row: list[_Row],
    kept: list[_Row],
    split: str,
    path: str,
    where: str,
    delimiter: str,
    multi_label: bool,
) -> None:
    """UserError when a label of the file's other splits never occurs in the training rows: a
    class nothing trains on, most often a mistyped label in a test or validation row (or, in
    a single-label file, classes joined with the delimiter)."""
    trained = {name for row in kept for name in row.labels}
    strays = [row for row in every_row if set(row.labels) - trained]
    if strays:
        first = strays[0]
        names = sorted(set(first.labels) - trained)
        others = f" ({len(strays)} rows in all)" if len(strays) > 1 else ""
        fix = "a typo? Correct the label, or give the class training rows"
        if not multi_label and delimiter and delimiter in names[0]:
            fix = (
                f"it joins names with {delimiter!r}: set config.data.multi_label=true if an "
                "image can show several classes, or correct the label"
            )
        raise UserError(
            f"{where}: label {names[0]!r} of row {first.number} (split {first.split!r}) of "
            f"{path} is on no row of split {split!r}{others}; {fix}"
        )


def _warn_joined_labels(class_names: list[str], delimiter: str, field: str) -> None:
    """Single-label labels that look like several classes joined with the delimiter."""
    joined = [c for c in class_names if delimiter and delimiter in c]
    if joined:
        say(
            f"Warning: {field}: {len(joined)} of {len(class_names)} labels join names "
            f"with {delimiter!r} (e.g. {joined[0]!r}), and each such label is one class of its "
            "own; if an image can show several classes, set config.data.multi_label=true"
        )


def _resolve(folder: str, image: str) -> str:
    """An image cell as a path: absolute paths and URLs as they are, others under `folder`."""
    if "://" in image or os.path.isabs(image) or not folder:
        return image
    if "://" in folder:
        return folder.rstrip("/") + "/" + image
    return os.path.join(folder, image)


def _check_images_exist(
    rows: list[_Row], paths: list[str], path: str, folder: str, where: str
) -> None:
    """Raises UserError naming the first few rows whose image file does not exist."""
    exists = [os.path.isfile(p) if "://" not in p else None for p in paths]
    remote = [i for i, found in enumerate(exists) if found is None]
    if remote:
        # One request per file on gs://: several in flight at once.
        with ThreadPoolExecutor(max_workers=32) as pool:
            found = pool.map(tf.io.gfile.exists, [paths[i] for i in remote])
            for i, there in zip(remote, found):
                exists[i] = there
    missing = [i for i, there in enumerate(exists) if not there]
    if not missing:
        return
    examples = ", ".join(f"row {rows[i].number}: {paths[i]}" for i in missing[:3])
    raise UserError(
        f"{where}: {len(missing)} image file(s) listed in {path} do not exist, e.g. {examples}; "
        f"relative paths are relative to the CSV's folder ({folder or '.'}): fix the paths or "
        "add the files"
    )


def _encode_labels(rows: list[_Row], class_names: list[str], multi_label: bool) -> np.ndarray:
    """int32 [N] class ids, or uint8 [N, C] multi-hot vectors when `multi_label`."""
    ids = {name: i for i, name in enumerate(class_names)}
    if not multi_label:
        return np.asarray([ids[row.labels[0]] for row in rows], np.int32)
    hot = np.zeros((len(rows), len(class_names)), np.uint8)
    for n, row in enumerate(rows):
        hot[n, [ids[name] for name in row.labels]] = 1
    return hot
