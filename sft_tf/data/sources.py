"""Dataset specs -> `Examples`: class folders, TFDS, TFRecord files, CSV files and the
Fashion-MNIST IDX files. Nothing is decoded here.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft_tf.data import tfds_prepare
from sft_tf.data.csv_source import CsvColumns, load_csv
from sft_tf.data.examples import (
    TFRECORD_LABEL,
    TFRECORD_TEXT,
    Examples,
    RecordSource,
    check_class_names,
    tfds_split,
)
from sft_tf.data.folders import load_folder
from sft_tf.data.specs import FASHION_MNIST_FILES, parse_spec
from sft_tf.errors import UserError
from sft_tf.log import say

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "~/.keras/datasets/fashion-mnist",
)


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How specs are read, from `config.data`.

    Attributes:
      tfds_data_dir: TFDS data dir, local or gs:// ("" for TFDS's default).
      multi_label: labels are sets (multi-hot rows): csv: and tfrecord: sources only.
      label_delimiter: separates the labels of one CSV cell (multi-label).
      csv_columns: the column names of csv: sources.
    """

    tfds_data_dir: str = ""
    multi_label: bool = False
    label_delimiter: str = "|"
    csv_columns: CsvColumns = dataclasses.field(default_factory=CsvColumns)


MULTI_LABEL_KINDS = ("csv", "tfrecord")


def load_examples(
    spec: str, field: str = "spec", tfds_data_dir: str = "", options: ReadOptions | None = None
) -> Examples:
    """Lists a split's examples (no image is decoded here).

    Prints what the listing left out (`Examples.notes`), so that no file is dropped silently.

    Args:
      spec: a dataset spec string (not split:, which `holdout` resolves).
      field: the config field it came from, for error messages.
      tfds_data_dir: TFDS data dir, local or gs:// ("" for TFDS's default), when no `options`.
      options: how to read it (default: single-label, default CSV columns).

    Raises:
      UserError: the data cannot be found or listed, or has no classes or an empty class.
    """
    options = options or ReadOptions(tfds_data_dir=tfds_data_dir)
    parsed = parse_spec(spec, field)
    if options.multi_label and parsed.kind not in MULTI_LABEL_KINDS:
        raise UserError(
            f"{field}={spec!r}: config.data.multi_label=true needs labels that can be sets; a "
            f"{parsed.kind}: source has one class per image. Use a csv: file (labels joined by "
            f"{options.label_delimiter!r}) or tfrecord: records with several image/class/label ids"
        )
    if parsed.kind == "csv":
        examples = load_csv(
            parsed.path,
            parsed.split,
            spec,
            field,
            options.csv_columns,
            options.multi_label,
            options.label_delimiter,
        )
        return check_class_names(examples, field)
    if parsed.kind == "folder":
        examples = check_class_names(load_folder(parsed.path, spec, field), field)
        for note in examples.notes:
            say(note)
        return examples
    if parsed.kind == "tfds":
        examples = _load_tfds(parsed.path, parsed.split, options.tfds_data_dir, spec, field)
        return check_class_names(examples, field)
    if parsed.kind == "tfrecord":
        examples = _load_tfrecord(parsed.path, spec, field, options.multi_label)
        return check_class_names(examples, field)
    if parsed.kind == "split":
        raise UserError(f"{field}={spec!r}: split:FRACTION is only for config.data.validation")
    return _load_fashion_mnist(parsed.split, parsed.path, spec, field)


def _missing_module(error: ImportError, name: str, spec: str, field: str) -> UserError:
    """The error for a Python module TFDS imports and cannot find: no network would help."""
    module = error.name or str(error)
    return UserError(
        f"{field}={spec!r}: TFDS cannot read {name}: the Python module {module!r} is missing "
        f"(not a network problem); reinstall sft_tf (pip install -e .) or pip install {module}"
    )


def _load_tfds(name: str, split: str, data_dir: str, spec: str, field: str) -> Examples:
    try:
        import tensorflow_datasets as tfds

        builder = tfds.builder(name, data_dir=data_dir or None)
    except ImportError as e:
        raise _missing_module(e, name, spec, field) from e
    except Exception as e:
        raise UserError(
            f"{field}={spec!r}: no TFDS dataset {name!r} ({type(e).__name__}); see "
            "https://www.tensorflow.org/datasets/catalog for names"
        ) from e
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not isinstance(keys[0], str):
        raise UserError(
            f"{field}={spec!r}: {name} has no (image, label) supervised keys; "
            "write it to class folders or TFRecords instead"
        )
    image_key, label_key = keys
    label_feature = builder.info.features[label_key]
    if not hasattr(label_feature, "names"):
        raise UserError(f"{field}={spec!r}: {name}'s label {label_key!r} is not a class label")
    try:
        tfds_prepare.prepare(builder, spec, field)  # refuses at once when it cannot download
        ds = tfds_split(name, split, data_dir, image_key)
        labels = np.concatenate(
            [b.numpy() for b in ds.map(lambda ex: ex[label_key]).batch(8192)] or [np.zeros(0)]
        ).astype(np.int32)
    except ImportError as e:
        # TFDS imports some modules only when it first prepares a dataset.
        raise _missing_module(e, name, spec, field) from e
    except UserError:
        raise
    except Exception as e:
        raise UserError(
            f"{field}={spec!r}: could not read TFDS {name} split {split!r} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); offline? set "
            "config.data.tfds_data_dir to a prepared data dir"
        ) from e
    if not len(labels):
        raise UserError(f"{field}={spec!r}: split {split!r} of {name} is empty")
    source = RecordSource("tfds", name=name, split=split, data_dir=data_dir, image_key=image_key)
    return Examples(
        class_names=tuple(label_feature.names),
        labels=labels,
        origin=spec,
        records=source,
        positions=np.arange(len(labels), dtype=np.int64),
    )


def _read_tfrecord_labels(files, multi_label: bool, spec: str, field: str):
    """Every record's label ids and texts (lists per record when multi-label), and the number
    of records per file. Only the label fields are parsed; image bytes wait for training."""
    if multi_label:
        features = {
            TFRECORD_LABEL: tf.io.VarLenFeature(tf.int64),
            TFRECORD_TEXT: tf.io.VarLenFeature(tf.string),
        }
    else:
        features = {
            TFRECORD_LABEL: tf.io.FixedLenFeature([], tf.int64),
            TFRECORD_TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        }
    ids, texts, counts = [], [], []
    for path in files:
        before = len(ids)
        try:
            for record in tf.data.TFRecordDataset(path).batch(4096):
                batch = tf.io.parse_example(record, features)
                label, text = batch[TFRECORD_LABEL], batch[TFRECORD_TEXT]
                if multi_label:
                    ids += [row.tolist() for row in tf.sparse.to_dense(label, -1).numpy()]
                    texts += [
                        [t.decode("utf-8", "replace") for t in row if t]
                        for row in tf.sparse.to_dense(text, b"").numpy()
                    ]
                else:
                    ids += [[i] for i in label.numpy().tolist()]
                    texts += [[t.decode("utf-8", "replace")] for t in text.numpy()]
        except (tf.errors.OpError, ValueError) as e:
            raise UserError(
                f"{field}={spec!r}: {path} is not a TFRecord file of tf.train.Example with "
                f"{TFRECORD_LABEL} ({str(e).splitlines()[0][:200]})"
            ) from e
        counts.append(len(ids) - before)
    return [[i for i in row if i >= 0] for row in ids], texts, counts


def _load_tfrecord(pattern: str, spec: str, field: str, multi_label: bool = False) -> Examples:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise UserError(f"{field}={spec!r}: no files match {pattern}")
    ids, texts, counts = _read_tfrecord_labels(files, multi_label, spec, field)
    if not ids:
        raise UserError(f"{field}={spec!r}: the files matching {pattern} hold no records")
    # Class ids are whatever the writer used (0-based, 1-based, sparse): sorted, they become
    # labels 0..n-1, named by their text when the records carry one.
    names: dict[int, str] = {}
    for row_ids, row_texts in zip(ids, texts):
        for j, label_id in enumerate(row_ids):
            text = row_texts[j] if j < len(row_texts) else ""
            name = text or str(label_id)
            if names.setdefault(label_id, name) != name:
                raise UserError(
                    f"{field}={spec!r}: label {label_id} is named both {names[label_id]!r} and "
                    f"{name!r} in {TFRECORD_TEXT}; fix the records"
                )
    order = sorted(names)
    remap = {label_id: i for i, label_id in enumerate(order)}
    if multi_label:
        labels = np.zeros((len(ids), len(order)), np.uint8)
        for row, row_ids in enumerate(ids):
            labels[row, [remap[i] for i in row_ids]] = 1
    else:
        labels = np.asarray([remap[row[0]] for row in ids], np.int32)
    return Examples(
        class_names=tuple(names[i] for i in order),
        labels=labels,
        origin=spec,
        records=RecordSource("tfrecord", files=tuple(files), file_counts=tuple(counts)),
        positions=np.arange(len(labels), dtype=np.int64),
    )


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST container: magic, dims, then uint8 data), gzipped or not."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _load_fashion_mnist(split: str, directory: str, spec: str, field: str) -> Examples:
    candidates = [directory] if directory else list(FASHION_MNIST_DIRS)
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    for candidate in candidates:
        folder = Path(candidate).expanduser()
        images, labels = _find_idx(folder, image_stem), _find_idx(folder, label_stem)
        if images and labels:
            pixels = _read_idx(images)[..., None]
            return Examples(
                class_names=FASHION_MNIST_CLASSES,
                labels=_read_idx(labels).astype(np.int32),
                pixels=pixels,
                origin=spec,
                # Each image's index in the file, kept through subsets: its stable name.
                positions=np.arange(len(pixels), dtype=np.int64),
            )
    raise UserError(
        f"{field}={spec!r}: Fashion-MNIST IDX files ({image_stem}[.gz]) not found in "
        f"{', '.join(candidates)}; run `make data` (apt-get install dataset-fashion-mnist, "
        "or the keras.datasets download)"
    )
