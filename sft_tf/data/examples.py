"""`Examples`: a split's labels and a way to reach each image, cheap to subset before any
image is decoded (classes, few-shot sampling, hold-outs), and its encoded bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from sft_tf.errors import UserError
from sft_tf.log import say


@dataclasses.dataclass(frozen=True)
class RecordSource:
    """Encoded images read in one fixed order from a TFDS split or TFRecord files.

    Nothing is held in memory: `images()` streams the records again on every call, and an
    example is identified by its position in that stream.

    Attributes:
      kind: "tfds" or "tfrecord".
      files: TFRecord files in reading order (tfrecord only).
      file_counts: records per file, to name a record by file and index in messages.
      name: TFDS dataset name (tfds only).
      split: TFDS split, slicing included.
      data_dir: TFDS data dir ("" for TFDS's default).
      image_key: the TFDS feature holding the image.
    """

    kind: str
    files: tuple[str, ...] = ()
    file_counts: tuple[int, ...] = ()
    name: str = ""
    split: str = ""
    data_dir: str = ""
    image_key: str = ""

    def images(self) -> tf.data.Dataset:
        """A dataset of encoded image bytes (tf.string scalars), always in the same order."""
        if self.kind == "tfrecord":
            # One file after another (no interleave): positions must mean the same every pass.
            ds = tf.data.TFRecordDataset(list(self.files))
            spec = {TFRECORD_IMAGE: tf.io.FixedLenFeature([], tf.string)}
            return ds.map(lambda r: tf.io.parse_single_example(r, spec)[TFRECORD_IMAGE])
        ds = tfds_split(self.name, self.split, self.data_dir, self.image_key)
        return ds.map(lambda ex: ex[self.image_key])

    def where(self, position: int) -> str:
        """A human-readable location of the record at `position`."""
        if self.kind == "tfrecord":
            for path, count in zip(self.files, self.file_counts):
                if position < count:
                    return f"{path}#{position}"
                position -= count
        return f"tfds:{self.name}:{self.split}#{position}"


@dataclasses.dataclass(frozen=True)
class Examples:
    """A labelled split before decoding: file paths, record positions or in-memory pixels.

    Attributes:
      class_names: names of labels 0..n-1.
      labels: int32 [N] class ids, or for multi-label data uint8 [N, C] multi-hot rows (1 where
        the example shows that label).
      paths: str [N] for file sources, else None.
      pixels: uint8 [N, H, W, C] for in-memory sources, else None.
      origin: the spec it came from, for messages.
      records: the stream for TFDS and TFRecord sources, else None.
      positions: int64 [N] ascending positions in `records`, or each in-memory image's index in
        its source (Fashion-MNIST), kept through `take`; else None.
      notes: what listing the source left out and why (ignored files, folder links that
        loop), one printable line each.
      decoded: uint8 [N, S, S, 3] pixels of a file or record source, decoded and resized by
        the up-front scan (`scan_lib.scan_images`) for the pipelines to read instead of
        decoding again; None when the scan did not keep them.
      decoded_as: (S, resize method) of `decoded`.
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    paths: np.ndarray | None = None
    pixels: np.ndarray | None = None
    origin: str = ""
    records: RecordSource | None = None
    positions: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    decoded: tf.Tensor | None = dataclasses.field(default=None, compare=False, repr=False)
    decoded_as: tuple[int, str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Examples:
        """Returns the examples at `indices`, same classes.

        Record sources are streamed in their stored order, so their indices are sorted.
        """
        indices = np.asarray(indices, np.int64)
        if self.records is not None:
            indices = np.sort(indices)
        return dataclasses.replace(
            self,
            labels=self.labels[indices],
            paths=None if self.paths is None else self.paths[indices],
            pixels=None if self.pixels is None else self.pixels[indices],
            positions=None if self.positions is None else self.positions[indices],
            decoded=None if self.decoded is None else tf.gather(self.decoded, indices),
        )

    def decoded_at(self, image_size: int, resize_method: str) -> tf.Tensor | None:
        """The scan's decoded pixels if they are at this size and resize method, else None."""
        return self.decoded if self.decoded_as == (image_size, resize_method) else None

    def names(self) -> list[str]:
        """What names each example in reports: its file path, else `origin #position`."""
        if self.paths is not None:
            return [str(p) for p in self.paths]
        where = self.positions if self.positions is not None else range(len(self))
        return [f"{self.origin} #{int(i)}" for i in where]

    @property
    def multi_label(self) -> bool:
        """True when every example has a set of labels (multi-hot rows), not one class."""
        return np.ndim(self.labels) == 2

    def has(self, label: int) -> np.ndarray:
        """Boolean [N]: which examples carry `label`."""
        if self.multi_label:
            return self.labels[:, label] > 0
        return self.labels == label

    def counts(self) -> np.ndarray:
        """Examples per class (multi-label: positives per label), int [num_classes]."""
        if self.multi_label:
            return self.labels.sum(0, dtype=np.int64)
        return np.bincount(self.labels, minlength=len(self.class_names))

    def label_names(self, index: int) -> str:
        """The label(s) of example `index` as text: its class, or its labels joined by |."""
        if self.multi_label:
            return "|".join(self.class_names[c] for c in np.flatnonzero(self.labels[index]))
        return self.class_names[self.labels[index]]

    def where(self, index: int) -> str:
        """Where example `index` comes from: its path, record location, or spec and index."""
        if self.paths is not None:
            return str(self.paths[index])
        if self.records is not None:
            return self.records.where(int(self.positions[index]))
        position = index if self.positions is None else int(self.positions[index])
        return f"{self.origin}#{position}"


def check_class_names(examples: Examples, field: str) -> Examples:
    """Refuses class names that could break files, assets or logs they end up in.

    Names come from folder names, TFRecord text fields or TFDS metadata and go into
    labels.txt (one per line), the export and file names: no empty names, no control
    characters (a newline would shift every label after it), no path separators, no . or ..

    Raises:
      UserError: naming the class and the source.
    """
    for name in examples.class_names:
        bad = (
            not name.strip()
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
        )
        if bad:
            raise UserError(
                f"{field}={examples.origin!r}: class name {name!r} is not allowed (empty, . or "
                ".., a path separator or a control character); rename that class"
            )
    return examples


def holdout(
    train: Examples, fraction: float, seed: int, field: str = "validation"
) -> tuple[Examples, Examples]:
    """Splits off a seeded, stratified validation set: the same seed gives the same split.

    Each class gives round(fraction x its examples), at least one, never all: a class of one
    example stays in training only, and a warning names it. Multi-label: that share of all the
    examples (label sets do not partition them); the warning names labels none held out shows.

    Args:
      train: the training examples; fraction: the share held out; seed: the run's seed.
      field: the config field of the split: spec, for messages.

    Returns:
      (remaining training examples, held-out validation examples); no example is in both.

    Raises:
      UserError: nothing can be held out (every class has one example).
    """
    rng = np.random.default_rng(seed)
    if train.multi_label:
        groups = [np.arange(len(train))]
    else:
        groups = [np.flatnonzero(train.has(c)) for c in range(len(train.class_names))]
    held = []
    for members in groups:
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(rng.permutation(members)[: max(count, 0)])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    where = f"{field}='split:{fraction}'"
    if not len(held_out):
        raise UserError(
            f"{where} holds out nothing: each class of {train.origin} has one example, kept "
            "for training; add examples, or give a validation set of its own"
        )
    keep = np.setdiff1d(np.arange(len(train)), held_out)
    validation = dataclasses.replace(
        train.take(held_out), origin=f"split:{fraction} of {train.origin}"
    )
    unseen = [repr(n) for n, c in zip(train.class_names, validation.counts()) if c == 0]
    if unseen:
        what = "positive of label(s)" if train.multi_label else "image of class(es)"
        say(
            f"Warning: {where} holds out no {what} {', '.join(unseen)}: too few examples to "
            "spare one, so they stay in training only and the validation scores say nothing "
            "about them; add examples, or give a validation set of its own"
        )
    return train.take(keep), validation


def parse_classes(text: str | None) -> list[str]:
    """Splits a comma-separated class list ("" or None means all classes)."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def select_classes(examples: Examples, classes: Sequence[str], field: str) -> Examples:
    """Keeps only `classes` (names or integer ids) and renumbers labels in that order.

    Raises:
      UserError: a class is neither a name nor an id of this split, or is listed twice.
    """
    if not classes:
        return examples
    ids = []
    for c in classes:
        if c in examples.class_names:
            ids.append(examples.class_names.index(c))
        elif c.isdigit() and int(c) < len(examples.class_names):
            ids.append(int(c))
        else:
            names = examples.class_names
            raise UserError(
                f"{field}: class {c!r} is not in {examples.origin} (classes: "
                f"{', '.join(names)}; names or ids 0..{len(names) - 1})"
            )
    if len(set(ids)) != len(ids):
        raise UserError(f"{field}: a class is listed twice in {','.join(classes)}")
    if examples.multi_label:
        # The listed labels' columns; examples showing none of them go.
        columns = examples.labels[:, ids]
        subset = examples.take(np.flatnonzero(columns.any(-1)))
        return dataclasses.replace(
            subset,
            class_names=tuple(examples.class_names[i] for i in ids),
            labels=subset.labels[:, ids],
        )
    remap = np.full(len(examples.class_names), -1, np.int32)
    remap[ids] = np.arange(len(ids), dtype=np.int32)
    keep = np.flatnonzero(remap[examples.labels] >= 0)
    subset = examples.take(keep)
    return dataclasses.replace(
        subset,
        class_names=tuple(examples.class_names[i] for i in ids),
        labels=remap[subset.labels],
    )


def sample_per_class(
    examples: Examples, per_class: int | None, seed: int, field: str = "examples_per_class"
) -> Examples:
    """Seeded few-shot sampling: up to `per_class` examples of each class (None keeps all).

    A class with fewer keeps all of its examples, and a warning names it with its count.
    Multi-label data: labels are visited rarest first and examples added until each label has
    `per_class` positives among those kept (or all it has); an example kept for one label
    counts for every label it shows. field: the config field of `per_class`, for the warning.
    """
    if per_class is None:
        return examples
    short = [f"{n} {c}" for n, c in zip(examples.class_names, examples.counts()) if c < per_class]
    if short:
        kind = "label(s) have fewer positive" if examples.multi_label else "class(es) have fewer"
        say(
            f"Warning: {field}={per_class}, but {len(short)} {kind} images than that, so all "
            f"of theirs are kept: {', '.join(short)}"
        )
    rng = np.random.default_rng(seed)
    if examples.multi_label:
        return examples.take(_sample_per_label(examples, per_class, rng))
    keep = []
    for label in range(len(examples.class_names)):
        members = np.flatnonzero(examples.labels == label)
        keep.append(rng.permutation(members)[:per_class])
    return examples.take(np.sort(np.concatenate(keep)))


def _sample_per_label(examples: Examples, per_label: int, rng: np.random.Generator) -> np.ndarray:
    chosen = np.zeros(len(examples), bool)
    for label in np.argsort(examples.counts(), kind="stable"):
        members = rng.permutation(np.flatnonzero(examples.has(label)))
        missing = per_label - int(chosen[members].sum())
        if missing > 0:
            chosen[members[~chosen[members]][:missing]] = True
    return np.flatnonzero(chosen)


def check_same_classes(
    class_names: Sequence[str], other: Examples, field: str, reference: str = "the training data"
) -> None:
    """Raises UserError when `other` does not have exactly `class_names`, in order."""
    if tuple(class_names) == tuple(other.class_names):
        return
    missing = sorted(set(class_names) - set(other.class_names))
    extra = sorted(set(other.class_names) - set(class_names))
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if extra:
        detail.append(f"not in {reference} {extra}")
    if not detail:
        detail.append("same names in a different order")
    raise UserError(
        f"{field}={other.origin!r} has different classes from {reference}: {'; '.join(detail)}"
    )


def encoded_images(examples: Examples) -> tf.data.Dataset:
    """(index, encoded bytes) for every example of a file or record source, in order."""
    if examples.paths is not None:
        files = tf.data.Dataset.from_tensor_slices((np.arange(len(examples)), examples.paths))
        # Reading is I/O-bound (more so on gs://): several files in flight at once.
        return files.map(
            lambda i, path: (i, tf.io.read_file(path)), num_parallel_calls=tf.data.AUTOTUNE
        )
    if examples.records is None:
        raise ValueError(f"{examples.origin} holds pixels, not encoded images")
    # The source streams every record; keep[pos] is this subset's index there or -1.
    keep = np.full(int(examples.positions.max()) + 1 if len(examples) else 0, -1, np.int64)
    keep[examples.positions] = np.arange(len(examples))
    keep_t = tf.constant(keep)
    stream = examples.records.images().take(len(keep)).enumerate()
    stream = stream.map(lambda pos, encoded: (tf.gather(keep_t, pos), encoded))
    # The filter hides the length; stating it lets Keras size its loops and progress bars.
    return stream.filter(lambda i, _: i >= 0).apply(
        tf.data.experimental.assert_cardinality(len(examples))
    )


def encoded_samples(examples: Examples, count: int) -> list[bytes]:
    """The first `count` examples as encoded image bytes (file contents, or PNG of the pixels)."""
    if examples.pixels is not None:
        return [tf.io.encode_png(p).numpy() for p in examples.pixels[:count]]
    subset = examples.take(np.arange(min(count, len(examples))))
    return [encoded for _, encoded in encoded_images(subset).as_numpy_iterator()]


def decoded_images(examples: Examples, indices, image_size: int, method: str) -> np.ndarray:
    """uint8 [len(indices), S, S, 3]: the examples at `indices`, decoded and resized as for
    evaluation, in the order asked (`take` streams record sources in stored order)."""
    from sft_tf.data import decode

    indices = np.asarray(indices, np.int64)
    order = np.argsort(indices, kind="stable")
    subset = examples.take(indices[order])
    pixels = decode.decode_images(encoded_samples(subset, len(subset)), image_size, method)
    return pixels[np.argsort(order)]


# Feature keys of TF Model Garden's image classification records.
TFRECORD_IMAGE = "image/encoded"
TFRECORD_LABEL = "image/class/label"
TFRECORD_TEXT = "image/class/text"


def tfds_split(name: str, split: str, data_dir: str, image_key: str) -> tf.data.Dataset:
    import tensorflow_datasets as tfds  # imported on use: it adds seconds to every start-up

    builder = tfds.builder(name, data_dir=data_dir or None)
    return builder.as_dataset(
        split=split,
        # Keep the encoded bytes: decoding is ours (robust, resized once), not TFDS's.
        decoders={image_key: tfds.decode.SkipDecoding()},
        # Unshuffled files and no auto-cache: positions stay fixed and memory stays flat.
        shuffle_files=False,
        read_config=tfds.ReadConfig(try_autocache=False),
    )
