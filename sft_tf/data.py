"""Dataset specs -> labelled examples -> tf.data pipelines of (uint8 images, labels).

A spec string names where a split comes from:

  folder:PATH               one sub-folder per class (sorted names are the classes), images
                            anywhere below it; PATH may be local or gs://.
  tfds:NAME[:SPLIT]         a TFDS dataset (SPLIT defaults to train and takes TFDS slicing,
                            e.g. train[:80%]); the image and label come from the builder's
                            supervised keys, class names from its label feature.
  tfrecord:GLOB             tf.train.Example records with image/encoded, image/class/label and
                            optionally image/class/text (TF Model Garden's layout).
  fashion_mnist:SPLIT[:DIR] the Fashion-MNIST IDX files (SPLIT is train or test). DIR defaults to
                            Debian's /usr/share/datasets/fashion-mnist, then Keras's cache
                            ~/.keras/datasets/fashion-mnist.
  split:FRACTION            validation only: a seeded hold-out of the training set (`holdout`).

A leading ~ in PATH, GLOB and DIR is the home folder. A folder listing follows folder links once
each and says what it left out: hidden files and folders, extensions TF cannot decode, files
outside the class folders, links that loop.

Loading a spec gives `Examples`: labels plus a way to reach each image (file paths, positions in a
record stream, or in-memory pixels), cheap to subset (classes, few-shot sampling, hold-outs)
before any image is decoded. `scan_images` decodes everything once to find files that cannot be
decoded (or would take too much memory to: over a pixel limit read from the header);
`build_dataset` turns the rest into the batches every trainer here consumes:
`(uint8 [B, H, W, 3], int32 [B])` with static shapes, or for the trainers one-hot float32
labels [B, C] and, with class weighting, a third element: per-example sample weights.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft_tf import augment as augment_lib
from sft_tf.errors import UserError

SPEC_KINDS = ("folder", "tfds", "tfrecord", "fashion_mnist", "split")
SPEC_HELP = "folder:PATH, tfds:NAME[:SPLIT], tfrecord:GLOB, fashion_mnist:train|test[:DIR]"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Formats people keep images in that TF cannot decode, with what to do about them.
UNSUPPORTED_HINTS = {
    ".tif": "TF cannot decode TIFF: convert to PNG",
    ".tiff": "TF cannot decode TIFF: convert to PNG",
    ".heic": "TF cannot decode HEIC: convert to JPEG",
}
# Pillow's MAX_IMAGE_PIXELS (~90 megapixels, e.g. 9500 x 9500): above it an image is far more
# likely a decompression bomb or a scan at absurd resolution than a training photo, and decoding
# it takes gigabytes (a 20000 x 20000 PNG of 1.2 MB decodes to 1.2 GB of RGB).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
RESIZE_METHODS = ("resize", "crop", "pad")
BAD_IMAGE_POLICIES = ("skip", "fail")
CACHE_MODES = ("auto", "memory", "disk", "off")
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
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Feature keys of TF Model Garden's image classification records.
TFRECORD_IMAGE = "image/encoded"
TFRECORD_LABEL = "image/class/label"
TFRECORD_TEXT = "image/class/text"


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed dataset spec string.

    Attributes:
      kind: one of SPEC_KINDS.
      path: folder, TFDS dataset name, TFRecord glob or Fashion-MNIST directory.
      split: TFDS split (with slicing), Fashion-MNIST split, or the hold-out fraction.
    """

    kind: str
    path: str
    split: str = ""


def parse_spec(spec: str, field: str = "spec") -> Spec:
    """Parses a dataset spec string.

    Args:
      spec: e.g. "folder:/data/train", "tfds:tf_flowers:train[:80%]", "split:0.1".
      field: the config field it came from, for error messages.

    Returns:
      The parsed `Spec`.

    Raises:
      UserError: unknown kind or missing parts.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SPEC_KINDS or not rest:
        raise UserError(
            f"{field}={spec!r} is not a dataset spec; use one of {SPEC_HELP} "
            "(or split:FRACTION for data.validation)"
        )
    if kind in ("folder", "tfrecord"):
        # The shell leaves ~ alone inside --config.data.train=folder:~/x; expand it here, once.
        return Spec(kind, os.path.expanduser(rest))
    if kind == "tfds":
        # Split on the first colon only: TFDS slicing ("train[:80%]") has colons of its own.
        name, _, split = rest.partition(":")
        return Spec("tfds", name, split or "train")
    if kind == "split":
        try:
            fraction = float(rest)
        except ValueError:
            fraction = -1.0
        if not 0.0 < fraction < 1.0:
            raise UserError(
                f"{field}={spec!r}: the hold-out fraction must be a number between 0 and 1, "
                "e.g. split:0.1"
            )
        return Spec("split", "", rest)
    split, _, directory = rest.partition(":")
    if split not in _FASHION_MNIST_FILES:
        raise UserError(f"{field}={spec!r}: Fashion-MNIST split must be 'train' or 'test'")
    return Spec("fashion_mnist", os.path.expanduser(directory), split)


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
        ds = _tfds_split(self.name, self.split, self.data_dir, self.image_key)
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
      labels: int32 [N].
      paths: str [N] for file sources, else None.
      pixels: uint8 [N, H, W, C] for in-memory sources, else None.
      origin: the spec it came from, for messages.
      records: the stream for TFDS and TFRecord sources, else None.
      positions: int64 [N] ascending positions in `records`, else None.
      notes: what listing the source left out and why (ignored files, folder links that
        loop), one printable line each.
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    paths: np.ndarray | None = None
    pixels: np.ndarray | None = None
    origin: str = ""
    records: RecordSource | None = None
    positions: np.ndarray | None = None
    notes: tuple[str, ...] = ()

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
        )

    def counts(self) -> np.ndarray:
        """Examples per class, int [num_classes]."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def where(self, index: int) -> str:
        """Where example `index` comes from: its path, record location, or spec and index."""
        if self.paths is not None:
            return str(self.paths[index])
        if self.records is not None:
            return self.records.where(int(self.positions[index]))
        return f"{self.origin}#{index}"


def _say(message: str) -> None:
    print(message, flush=True)


def load_examples(spec: str, field: str = "spec", tfds_data_dir: str = "") -> Examples:
    """Lists a split's examples (no image is decoded here).

    Prints what the listing left out (`Examples.notes`), so that no file is dropped silently.

    Args:
      spec: a dataset spec string (not split:, which `holdout` resolves).
      field: the config field it came from, for error messages.
      tfds_data_dir: TFDS data dir, local or gs:// ("" for TFDS's default).

    Raises:
      UserError: the data cannot be found or listed, or has no classes or an empty class.
    """
    parsed = parse_spec(spec, field)
    if parsed.kind == "folder":
        examples = check_class_names(_load_folder(parsed.path, spec, field), field)
        for note in examples.notes:
            _say(note)
        return examples
    if parsed.kind == "tfds":
        examples = _load_tfds(parsed.path, parsed.split, tfds_data_dir, spec, field)
        return check_class_names(examples, field)
    if parsed.kind == "tfrecord":
        return check_class_names(_load_tfrecord(parsed.path, spec, field), field)
    if parsed.kind == "split":
        raise UserError(f"{field}={spec!r}: split:FRACTION is only for config.data.validation")
    return _load_fashion_mnist(parsed.split, parsed.path, spec, field)


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


def holdout(train: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Splits off a seeded, stratified validation set: the same seed gives the same split.

    Args:
      train: the training examples.
      fraction: share of each class held out (at least one example of a class with two).
      seed: the run's seed.

    Returns:
      (remaining training examples, held-out validation examples); no example is in both.
    """
    rng = np.random.default_rng(seed)
    held = []
    for label in range(len(train.class_names)):
        members = np.flatnonzero(train.labels == label)
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(rng.permutation(members)[: max(count, 0)])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(len(train)), held_out)
    validation = dataclasses.replace(
        train.take(held_out), origin=f"split:{fraction} of {train.origin}"
    )
    return train.take(keep), validation


def _walk_files(folder: str, hidden: bool, notes: list[str]) -> Iterator[tuple[str, bool]]:
    """(path, hidden) of every file below `folder`, following folder links but never twice.

    tf.io.gfile.walk follows a link back to a parent round and round until the path is too long
    (a class listed 41 times over). Here each real folder is listed once: first every folder
    reached without a link, under its own path, then what links add; each link left out adds a
    line to `notes`. gs:// has no links. A file is hidden when its name or a folder between it
    and `folder` starts with "." (.DS_Store, .thumbnails/, .Trash/).

    Args:
      folder: a local or gs:// folder.
      hidden: whether `folder` itself is hidden.
      notes: gets a printable line for each folder link or folder left out.
    """
    local = "://" not in folder
    seen = {os.path.realpath(folder)} if local else set()
    pending = [(folder, hidden)]
    links = []  # (path, hidden) of folder links: followed once no plain folder is left
    while pending or links:
        if not pending:
            path, is_hidden = links.pop(0)
            real, above = os.path.realpath(path), os.path.realpath(os.path.dirname(path))
            if real in seen:
                loops = above == real or above.startswith(real.rstrip(os.sep) + os.sep)
                what = "loops" if loops else "leads to a folder already listed"
                notes.append(f"Ignored a folder link that {what}: {path} -> {real}")
            else:
                seen.add(real)
                pending.append((path, is_hidden))
            continue
        here, here_hidden = pending.pop()
        try:
            names = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(here))
        except tf.errors.OpError as e:
            notes.append(f"Ignored a folder that cannot be listed: {here} ({e.message[:200]})")
            continue
        for name in names:
            path = os.path.join(here, name)
            is_hidden = here_hidden or name.startswith(".")
            if not tf.io.gfile.isdir(path):
                yield path, is_hidden
            elif local and (os.path.islink(path) or os.path.realpath(path) in seen):
                links.append((path, is_hidden))
            else:
                if local:
                    seen.add(os.path.realpath(path))
                pending.append((path, is_hidden))


def _ignored_summary(hidden: int, extensions: Counter, outside: int = 0) -> str:
    """What was ignored, e.g. "hidden 2; unsupported extension 4 (.tiff x3, .txt x1)", or ""."""
    parts = []
    if hidden:
        parts.append(f"hidden {hidden}")
    if extensions:
        by_count = sorted(extensions.items(), key=lambda item: (-item[1], item[0]))
        listed = ", ".join(f"{ext} x{n}" for ext, n in by_count)
        hints = dict.fromkeys(UNSUPPORTED_HINTS[e] for e in extensions if e in UNSUPPORTED_HINTS)
        listed += "".join(f"; {hint}" for hint in hints)
        parts.append(f"unsupported extension {sum(extensions.values())} ({listed})")
    if outside:
        parts.append(f"outside the class folders {outside}")
    return "; ".join(parts)


def _load_folder(root: str, spec: str, field: str) -> Examples:
    if not tf.io.gfile.isdir(root):
        raise UserError(f"{field}={spec!r}: {root} is not a directory")
    # tf.io.gfile rather than os: the same code lists gs:// buckets for TPUs.
    class_names, notes = [], []
    hidden = outside = 0
    for name in sorted(name.rstrip("/") for name in tf.io.gfile.listdir(root)):
        path = os.path.join(root, name)
        if not tf.io.gfile.isdir(path):
            if name.startswith("."):
                hidden += 1
            else:
                outside += 1
        elif name.startswith("."):
            # Not a class (.Trash, .git): its files are counted, never labelled.
            hidden += sum(1 for _ in _walk_files(path, True, notes))
        else:
            class_names.append(name)
    if not class_names:
        raise UserError(f"{field}={spec!r}: {root} has no class sub-folders (one per class)")
    paths, labels, extensions = [], [], Counter()
    for label, name in enumerate(class_names):
        found, class_hidden, class_extensions = [], 0, Counter()
        for path, is_hidden in _walk_files(os.path.join(root, name), False, notes):
            extension = os.path.splitext(path)[1].lower()
            if is_hidden:
                class_hidden += 1
            elif extension in IMAGE_EXTENSIONS:
                found.append(path)
            else:
                class_extensions[extension or "(no extension)"] += 1
        if not found:
            ignored = _ignored_summary(class_hidden, class_extensions)
            raise UserError(
                f"{field}={spec!r}: class folder {os.path.join(root, name)} has no images "
                f"({', '.join(IMAGE_EXTENSIONS)}"
                + (f"; ignored there: {ignored}" if ignored else "")
                + "); add some or remove the folder"
            )
        paths += sorted(found)
        labels += [label] * len(found)
        hidden += class_hidden
        extensions += class_extensions
    ignored = _ignored_summary(hidden, extensions, outside)
    if ignored:
        total = hidden + sum(extensions.values()) + outside
        notes.append(f"Ignored {total} file(s) in {spec}: {ignored}")
    return Examples(
        class_names=tuple(class_names),
        labels=np.asarray(labels, np.int32),
        paths=np.asarray(paths),
        origin=spec,
        notes=tuple(notes),
    )


def _tfds_split(name: str, split: str, data_dir: str, image_key: str) -> tf.data.Dataset:
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
        builder.download_and_prepare()
        ds = _tfds_split(name, split, data_dir, image_key)
        labels = np.concatenate(
            [b.numpy() for b in ds.map(lambda ex: ex[label_key]).batch(8192)] or [np.zeros(0)]
        ).astype(np.int32)
    except ImportError as e:
        # TFDS imports some modules only when it first prepares a dataset.
        raise _missing_module(e, name, spec, field) from e
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


def _load_tfrecord(pattern: str, spec: str, field: str) -> Examples:
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise UserError(f"{field}={spec!r}: no files match {pattern}")
    features = {
        TFRECORD_LABEL: tf.io.FixedLenFeature([], tf.int64),
        TFRECORD_TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    ids, texts, counts = [], [], []
    for path in files:
        # Only the label fields are parsed; the image bytes are skipped until training.
        ds = tf.data.TFRecordDataset(path).batch(4096)
        before = len(ids)
        try:
            for batch in ds.map(lambda r: tf.io.parse_example(r, features)):
                ids += batch[TFRECORD_LABEL].numpy().tolist()
                texts += [t.decode("utf-8", "replace") for t in batch[TFRECORD_TEXT].numpy()]
        except tf.errors.OpError as e:
            raise UserError(
                f"{field}={spec!r}: {path} is not a TFRecord file of tf.train.Example with "
                f"{TFRECORD_LABEL} ({str(e).splitlines()[0][:200]})"
            ) from e
        counts.append(len(ids) - before)
    if not ids:
        raise UserError(f"{field}={spec!r}: the files matching {pattern} hold no records")
    # Class ids are whatever the writer used (0-based, 1-based, sparse): sorted, they become
    # labels 0..n-1, named by their text when the records carry one.
    names: dict[int, str] = {}
    for label_id, text in zip(ids, texts):
        name = text or str(label_id)
        if names.setdefault(label_id, name) != name:
            raise UserError(
                f"{field}={spec!r}: label {label_id} is named both {names[label_id]!r} and "
                f"{name!r} in {TFRECORD_TEXT}; fix the records"
            )
    order = sorted(names)
    remap = {label_id: i for i, label_id in enumerate(order)}
    labels = np.asarray([remap[i] for i in ids], np.int32)
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
    image_stem, label_stem = _FASHION_MNIST_FILES[split]
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
            )
    raise UserError(
        f"{field}={spec!r}: Fashion-MNIST IDX files ({image_stem}[.gz]) not found in "
        f"{', '.join(candidates)}; run `make data` (apt-get install dataset-fashion-mnist, "
        "or the keras.datasets download)"
    )


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
    remap = np.full(len(examples.class_names), -1, np.int32)
    remap[ids] = np.arange(len(ids), dtype=np.int32)
    keep = np.flatnonzero(remap[examples.labels] >= 0)
    subset = examples.take(keep)
    return dataclasses.replace(
        subset,
        class_names=tuple(examples.class_names[i] for i in ids),
        labels=remap[subset.labels],
    )


def sample_per_class(examples: Examples, per_class: int | None, seed: int) -> Examples:
    """Seeded few-shot sampling: up to `per_class` examples of each class (None keeps all)."""
    if per_class is None:
        return examples
    rng = np.random.default_rng(seed)
    keep = []
    for label in range(len(examples.class_names)):
        members = np.flatnonzero(examples.labels == label)
        keep.append(rng.permutation(members)[:per_class])
    return examples.take(np.sort(np.concatenate(keep)))


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


def decode_image(encoded: tf.Tensor, image_size: int, method: str = "resize") -> tf.Tensor:
    """Encoded image bytes -> RGB uint8 [image_size, image_size, 3].

    Reads JPEG (CMYK included), PNG (8 or 16 bit, grayscale, palette, alpha), GIF (the first
    frame of an animation), BMP and WebP. The training pipeline and the exported serving
    signature both call this, so a served image is decoded and resized exactly as in training.

    Args:
      encoded: a scalar tf.string.
      image_size: output height and width.
      method: "resize", "crop" or "pad" (see `resize`).

    Raises:
      tf.errors.InvalidArgumentError when run on bytes that are not a decodable image.
    """
    return resize(decode_rgb(encoded), image_size, method)


def decode_native(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded bytes -> uint8 [H, W, C] with the file's own channels (1 gray, 2 gray+alpha, 3, 4).

    16-bit images are scaled to 8 bits; CMYK JPEGs come out as RGB (TF converts them).
    """
    # expand_animations=False: a GIF gives its first frame, so every image has rank 3.
    image = tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, None])
    return image


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded bytes -> RGB uint8 [H, W, 3], any size; transparency is composited over white."""
    return to_rgb(decode_native(encoded))


def to_rgb(image: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, C] with C in 1..4 -> RGB uint8 [H, W, 3]."""
    channels = tf.shape(image)[-1]
    has_alpha = tf.equal(channels % 2, 0)
    colour = tf.cond(
        channels < 3,
        lambda: tf.image.grayscale_to_rgb(image[..., :1]),
        lambda: image[..., :3],
    )
    colour.set_shape([None, None, 3])

    def composite():
        # Transparent pixels often hold arbitrary colour (commonly black); shown on a page
        # they look white, so that is what the model sees, in training and serving alike.
        alpha = tf.cast(image[..., -1:], tf.float32) / 255.0
        mixed = tf.cast(colour, tf.float32) * alpha + 255.0 * (1.0 - alpha)
        return tf.cast(tf.round(mixed), tf.uint8)

    rgb = tf.cond(has_alpha, composite, lambda: colour)
    rgb.set_shape([None, None, 3])
    return rgb


def resize(image: tf.Tensor, image_size: int, method: str = "resize") -> tf.Tensor:
    """Any-size uint8 [H, W, C] or [B, H, W, C] (C = 1 or 3) -> RGB uint8 at image_size.

    Args:
      image: one image or a batch.
      image_size: output height and width.
      method: "resize" stretches to a square (keeps everything, distorts the aspect);
        "crop" scales the short side to image_size and keeps the centre square;
        "pad" scales the long side to image_size and pads the rest with black.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method {method!r} is not one of {RESIZE_METHODS}")
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    size = [image_size, image_size]
    # antialias: without it, shrinking a large photo aliases badly.
    if method == "resize":
        image = tf.image.resize(image, size, antialias=True)
    elif method == "pad":
        image = tf.image.resize_with_pad(tf.cast(image, tf.float32), *size, antialias=True)
    else:
        hw = tf.cast(tf.shape(image)[-3:-1], tf.float32)
        scale = image_size / tf.reduce_min(hw)
        scaled = tf.cast(tf.math.ceil(hw * scale), tf.int32)
        image = tf.image.resize(image, scaled, antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, *size)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


# ---------------------------------------------------------------------------------------------
# Scanning: every image decoded once, before training, to find the ones that cannot be
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageScan:
    """Per-example facts from decoding a split once (arrays aligned with the Examples).

    Attributes:
      ok: bool [N], False where decoding failed.
      reasons: {index: why it failed} for the examples that are not ok.
      height, width: int [N] of the stored image (0 where not ok).
      channels: int [N] as stored: 1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha.
      cmyk: bool [N], CMYK (or YCCK) JPEGs.
      digest: uint64 [N] fingerprint of the encoded bytes (of the pixels for in-memory data).
    """

    ok: np.ndarray
    reasons: dict[int, str]
    height: np.ndarray
    width: np.ndarray
    channels: np.ndarray
    cmyk: np.ndarray
    digest: np.ndarray

    def bad(self, examples: Examples) -> list[tuple[str, str]]:
        """[(location, reason)] of every example that could not be decoded, in order."""
        return [(examples.where(i), self.reasons[i]) for i in sorted(self.reasons)]


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


def stored_size(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(height, width) as int64 scalars, read from the image's header without decoding it.

    The sizes the decoder would allocate: JPEG's frame header, PNG's IHDR, GIF's logical screen,
    BMP's info header (a negative height is a top-down image) and WebP's VP8, VP8L or VP8X
    header. (0, 0) for anything else, which then fails to decode.

    Raises:
      tf.errors.InvalidArgumentError (when run) on a JPEG whose header is corrupt.
    """
    # The first 32 bytes hold every header read here; zero padding keeps short files in bounds.
    head = tf.strings.substr(tf.strings.join([encoded, b"\0" * 32]), 0, 32)
    b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def little(at: int, size: int) -> tf.Tensor:
        return sum(b[at + k] * 256**k for k in range(size))

    def big(at: int, size: int) -> tf.Tensor:
        return sum(b[at + k] * 256 ** (size - 1 - k) for k in range(size))

    def starts(magic: bytes, at: int = 0) -> tf.Tensor:
        return tf.equal(tf.strings.substr(head, at, len(magic)), magic)

    def signed32(value: tf.Tensor) -> tf.Tensor:
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1]

    # VP8 and VP8L hold 14-bit sizes (VP8L's packed one after the other, minus 1).
    vp8l, bits14 = little(21, 4), 2**14
    webp = starts(b"RIFF") & starts(b"WEBP", 8)
    cases = [
        (starts(b"\x89PNG\r\n\x1a\n"), (big(20, 4), big(16, 4))),
        (starts(b"GIF8"), (little(8, 2), little(6, 2))),
        (starts(b"BM"), (signed32(little(22, 4)), signed32(little(18, 4)))),
        (webp & starts(b"VP8 ", 12), (little(28, 2) % bits14, little(26, 2) % bits14)),
        (webp & starts(b"VP8L", 12), (vp8l // bits14 % bits14 + 1, vp8l % bits14 + 1)),
        (webp & starts(b"VP8X", 12), (little(27, 3) + 1, little(24, 3) + 1)),
    ]
    zero = tf.constant(0, tf.int64)
    height, width = zero, zero
    for match, (h, w) in reversed(cases):
        height, width = tf.where(match, h, height), tf.where(match, w, width)
    return tf.cond(tf.io.is_jpeg(encoded), jpeg, lambda: (height, width))


def _probe(encoded: tf.Tensor, max_pixels: int) -> tuple[tf.Tensor, ...]:
    # The size check runs before the decode: a small file can decode to gigabytes.
    height, width = stored_size(encoded)
    fits = tf.debugging.assert_less_equal(
        height * width, tf.constant(max_pixels, tf.int64), message="too many pixels"
    )
    with tf.control_dependencies([fits]):
        # The same decode as training (to_rgb after it cannot fail on 1-4 channels), so an
        # image that passes here decodes in the pipeline too.
        image = decode_native(encoded)
    shape = tf.shape(image)
    cmyk = tf.cond(
        tf.io.is_jpeg(encoded),
        # The JPEG header's component count: 4 means CMYK/YCCK (TF decodes it to RGB).
        lambda: tf.equal(tf.io.extract_jpeg_shape(encoded)[2], 4),
        lambda: tf.constant(False),
    )
    digest = tf.bitcast(tf.fingerprint(tf.expand_dims(encoded, 0))[0], tf.int64)
    return shape[0], shape[1], shape[2], cmyk, digest


def _why_undecodable(encoded: bytes, max_pixels: int) -> str:
    if not encoded:
        return "empty file (0 bytes)"
    try:
        height, width = (int(v) for v in stored_size(tf.constant(encoded)))
        if height * width > max_pixels:
            return (
                f"{width} x {height} pixels is over data.max_image_pixels={max_pixels}; "
                "downscale it or raise the limit"
            )
        _probe(tf.constant(encoded), max_pixels)
    except tf.errors.OpError as e:
        message = e.message.split("}}")[-1].strip().splitlines()[0]
        if "Unknown image file format" in message:
            return "not an image (unknown format; JPEG, PNG, GIF, BMP and WebP are read)"
        if "jpeg::Uncompress failed" in message or "Invalid JPEG data" in message:
            return "truncated or corrupt JPEG"
        return f"undecodable: {message[:200]}"
    return "undecodable (failed in the pipeline, decodes alone)"


def scan_images(examples: Examples, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageScan:
    """Decodes every example once (in parallel) and records what it found.

    Args:
      examples: any split.
      max_pixels: images with more pixels (height x width, read from the header) are not
        decoded but counted as bad (data.max_image_pixels).

    Returns:
      An `ImageScan` aligned with `examples`.
    """
    n = len(examples)
    height, width, channels = (np.zeros(n, np.int64) for _ in range(3))
    cmyk, ok = np.zeros(n, bool), np.zeros(n, bool)
    digest = np.zeros(n, np.uint64)
    if examples.pixels is not None:
        import hashlib

        ok[:] = True
        height[:], width[:], channels[:] = examples.pixels.shape[1:4]
        for i, pixels in enumerate(examples.pixels):
            raw = hashlib.blake2b(pixels.tobytes(), digest_size=8).digest()
            digest[i] = int.from_bytes(raw, "little")
        return ImageScan(ok, {}, height, width, channels, cmyk, digest)
    ds = encoded_images(examples).map(
        lambda i, encoded: (i, *_probe(encoded, max_pixels)),
        # Decoding is the whole cost of a scan: every core, in any order.
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False,
    )
    # A failing decode drops its element; the indices that never arrive are the bad ones.
    ds = ds.ignore_errors().batch(1024)
    for i, h, w, c, k, d in ds.as_numpy_iterator():
        ok[i], height[i], width[i], channels[i], cmyk[i] = True, h, w, c, k
        digest[i] = d.view(np.uint64)
    reasons = {int(i): "" for i in np.flatnonzero(~ok)}
    if reasons:
        # Decode the failures again, one by one and eagerly, to say why each failed.
        if examples.paths is not None:
            for i in reasons:
                try:
                    encoded = tf.io.gfile.GFile(examples.paths[i], "rb").read()
                except tf.errors.OpError as e:
                    reasons[i] = f"unreadable: {e.message[:200]}"
                    continue
                reasons[i] = _why_undecodable(encoded, max_pixels)
        else:
            bad = examples.take(np.asarray(sorted(reasons)))
            for (_, encoded), i in zip(encoded_images(bad).as_numpy_iterator(), sorted(reasons)):
                reasons[i] = _why_undecodable(encoded, max_pixels)
    return ImageScan(ok, reasons, height, width, channels, cmyk, digest)


def drop_bad(examples: Examples, scan: ImageScan) -> Examples:
    """The examples that decoded; step counts computed from the result are right."""
    return examples if scan.ok.all() else examples.take(np.flatnonzero(scan.ok))


def cache_plan(
    examples: Examples, image_size: int, mode: str, budget_mb: int, directory: str, tag: str
) -> str:
    """Where `build_dataset` caches decoded pixels: "memory", "off" or a cache file path.

    Args:
      examples: the split.
      image_size: output height and width.
      mode: "auto" (memory when the decoded split fits in `budget_mb`, else disk), "memory",
        "disk" or "off".
      budget_mb: memory the decoded-pixel cache may take.
      directory: where disk caches go (the run's workdir).
      tag: distinguishes caches of different splits.

    Returns:
      The `cache` argument for `build_dataset`.
    """
    size_mb = len(examples) * image_size * image_size * 3 / 2**20
    if mode == "auto":
        mode = "memory" if size_mb <= budget_mb else "disk"
    if mode != "disk":
        return mode
    # The file name hashes everything that changes the cached pixels, so a stale cache from
    # other data, size or method is never replayed.
    import hashlib

    h = hashlib.sha256(f"{image_size}|{examples.origin}|{tag}".encode())
    h.update(np.asarray(examples.labels).tobytes())
    locations = examples.paths if examples.paths is not None else examples.positions
    if locations is not None:
        h.update("\n".join(map(str, locations)).encode())
    path = os.path.join(directory, f"{tag}-{h.hexdigest()[:16]}")
    tf.io.gfile.makedirs(directory)  # TF's file cache does not create its folder
    # A run killed while writing the cache leaves a lock file that makes every later run fail
    # ("concurrent caching iterator"); runs are assumed not to share a cache_dir concurrently.
    for stale in tf.io.gfile.glob(path + "_*.lockfile") + tf.io.gfile.glob(path + "*.tempstate*"):
        tf.io.gfile.remove(stale)
    return path


def epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """The shuffling seed of one training epoch: a function of the run's seed and the epoch."""
    return seed * 1_000_003 + tf.cast(epoch, tf.int64)


def balanced_epochs(
    per_class: Sequence[Callable[[tf.Tensor], tf.data.Dataset]], seed: int
) -> Callable[[tf.Tensor], tf.data.Dataset]:
    """One epoch function from per-class ones: each epoch draws the classes equally often
    (`augment.balanced_stream`, seeded by `epoch_seed`)."""

    def epoch_examples(epoch):
        streams = [one_class(epoch) for one_class in per_class]
        return augment_lib.balanced_stream(streams, epoch_seed(seed, epoch))

    return epoch_examples


# The graph-level seed of the epoch function (see `epoch_stream`).
_EPOCH_GRAPH_SEED = 1


def epoch_stream(
    epoch_examples: Callable[[tf.Tensor], tf.data.Dataset],
    batch_size: int,
    epoch_batches: int,
    start: tuple[int, int] = (0, 0),
    until_epoch: int | None = None,
) -> tf.data.Dataset:
    """Training batches, epoch after epoch, numbered through the whole run.

    Epoch e is `epoch_examples(e)` (examples shuffled by `epoch_seed`) in `epoch_batches` full
    batches, so its batches depend on the seed and e alone: a run resumed at epoch e, batch b
    gets exactly the batches the uninterrupted run got from there, without replaying earlier
    epochs (only the first b batches of epoch e are made again, and dropped). The epochs are
    made one after another from the same cached examples (measured: no memory growth with the
    number of epochs; one dataset per epoch chained instead would copy in-memory pixels into
    each of them when tf.data optimises the graph).

    Args:
      epoch_examples: epoch number (an int64 tensor) -> that epoch's examples, one at a time.
      batch_size: examples per batch (full batches only).
      epoch_batches: batches per epoch.
      start: (epoch, batch) where the stream begins.
      until_epoch: the epoch before which it ends (default: the end of the start epoch).

    Returns:
      (global batch number, batch) pairs; batch b of epoch e is number e * epoch_batches + b.
    """
    first, skip = start

    def one_epoch(epoch):
        # tf.data combines an op's seed with the graph-level seed, and with a tensor op seed
        # fails if that graph seed is 0 (what keras.utils.set_random_seed(0) leaves). This
        # function's own graph gets a fixed one, so the order depends on `epoch_seed` alone.
        tf.random.set_seed(_EPOCH_GRAPH_SEED)
        batches = epoch_examples(epoch).batch(batch_size, drop_remainder=True)
        return batches.take(epoch_batches).enumerate(epoch * epoch_batches)

    epochs = tf.data.Dataset.range(first, first + 1 if until_epoch is None else until_epoch)
    return epochs.flat_map(one_epoch).skip(skip)


def _epoch_examples(
    examples: Examples,
    image_size: int,
    training: bool,
    seed: int,
    resize_method: str,
    cache: str,
    memory_budget_mb: int,
    batch_size: int,
    sources: dict | None = None,
) -> Callable[[tf.Tensor | None], tf.data.Dataset]:
    """(uint8 image, int32 label) examples: read, decode+resize, cache; shuffled when training.

    Returns a function of the epoch number giving that epoch's examples (in the same order for
    evaluation). The decoded, cached examples are built once and shared by every epoch, and by
    every call given the same `sources` dict.
    """
    n = len(examples)
    labels = tf.constant(examples.labels, tf.int32)
    # Uncached files are shuffled by name before reading (below), not as decoded pixels.
    shuffle_names = training and cache == "off" and examples.paths is not None

    # Named functions, not lambdas: AutoGraph mixes up several lambdas in one function.
    def resize_pixels(image, label):
        return resize(image, image_size, resize_method), label

    def decode(encoded, label):
        return decode_image(encoded, image_size, resize_method), label

    def read(path, label):
        return tf.io.read_file(path), label

    def look_up_label(index, encoded):
        return encoded, tf.gather(labels, index)

    # Decoding dominates an uncached epoch: every core. The output order stays the input's
    # (tf.data's default), so a seed gives the same batches in every run.
    if shuffle_names:
        # Nothing is cached: shuffle the file names (a few bytes each), not the pixels, so the
        # order is uniformly random and memory does not grow with the data.
        names = tf.data.Dataset.from_tensor_slices((examples.paths, labels))

        def shuffled_files(epoch):
            ds = names.shuffle(n, seed=epoch_seed(seed, epoch))
            ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE)
            return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

        return shuffled_files

    def decoded() -> tf.data.Dataset:
        if examples.pixels is not None:
            ds = tf.data.Dataset.from_tensor_slices((examples.pixels, labels))
            ds = ds.map(resize_pixels, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = encoded_images(examples).map(look_up_label)
            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        if cache != "off":
            # Cache decoded, resized pixels: later epochs skip reading and decoding entirely.
            # A file cache when the split would not fit in memory (`cache_plan`).
            ds = ds.cache() if cache == "memory" else ds.cache(cache)
        return ds

    if sources is None:
        ds = decoded()
    else:
        key = (id(examples), image_size, resize_method, cache)
        if key not in sources:
            # The Examples object is kept with its dataset so that its id is never reused.
            sources[key] = (examples, decoded())
        ds = sources[key][1]
    if not training:
        return lambda epoch: ds
    # Shuffle before batching so every batch mixes classes; a full buffer over an in-memory
    # cache is a uniform shuffle, otherwise the buffer is bounded by the memory budget.
    per_image = image_size * image_size * 3
    buffer = (
        n if cache == "memory" else max(batch_size, min(n, memory_budget_mb * 2**20 // per_image))
    )
    return lambda epoch: ds.shuffle(buffer, seed=epoch_seed(seed, epoch))


def build_dataset(
    examples: Examples,
    image_size: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Sequence[str] = (),
    resize_method: str = "resize",
    cache: str = "memory",
    memory_budget_mb: int = 1024,
    num_classes: int = 0,
    class_weights: np.ndarray | None = None,
    resample: str = "none",
    start: tuple[int, int] = (0, 0),
    until_epoch: int | None = None,
    epoch_batches: int | None = None,
    sources: dict | None = None,
) -> tf.data.Dataset:
    """The input pipeline: read, decode+resize, cache, shuffle, batch, augment, prefetch.

    Training batches come epoch after epoch from `start` until `until_epoch` (give fit
    steps_per_epoch); which examples form batch b of epoch e, and how they are augmented,
    depends on the seed, e and b alone (`epoch_stream`, `augment.BatchSeeds`), so a resumed
    run continues exactly.

    Args:
      examples: what to read (undecodable files already dropped, see `scan_images`).
      image_size: output height and width.
      batch_size: the global batch size (a strategy splits it over replicas).
      training: shuffle every epoch, drop the last partial batch (static shapes), augment.
      seed: shuffling and augmentation seed.
      augment: augmentation names (see augment.AUGMENTATIONS); only used when training.
        mixup and cutmix need `num_classes`.
      resize_method: "resize", "crop" or "pad" (see `resize`).
      cache: "memory", "off", or a file path prefix for an on-disk cache (see `cache_plan`).
      memory_budget_mb: bounds the shuffle buffer when the pixels are not cached in memory.
      num_classes: > 0: one-hot float32 labels of this width (what the trainers' loss takes);
        0: int32 labels.
      class_weights: per-class weights (`augment.class_weights`) for training batches, which
        then carry a third element, the per-example sample weight. Needs `num_classes`.
      resample: "balanced": training draws every class equally often from one stream per class
        (`augment.balanced_stream`).
      start: training only: (epoch, batch) of the run where the stream begins.
      until_epoch: training only: the epoch before which it ends (default: start's epoch + 1).
      epoch_batches: training only: batches per epoch (default: all full batches of examples).
      sources: a dict shared by several calls over the same examples (say one per training
        phase) so they share one decode and cache instead of each filling its own.

    Returns:
      A dataset of (uint8 [B, S, S, 3], labels) or (images, labels, float32 weights [B]).

    Raises:
      UserError: training on fewer examples than one batch.
    """
    mixing = [a for a in augment if a in augment_lib.MIXING] if training else []
    if (mixing or class_weights is not None) and not num_classes:
        raise ValueError("mixup, cutmix and class weights need one-hot labels (num_classes)")
    if training and len(examples) < batch_size:
        raise UserError(
            f"{examples.origin!r} has {len(examples)} training examples, fewer than one batch of "
            f"data.global_batch_size={batch_size}; lower the batch size"
        )
    by_epoch = functools.partial(
        _epoch_examples,
        image_size=image_size,
        training=training,
        seed=seed,
        resize_method=resize_method,
        memory_budget_mb=memory_budget_mb,
        batch_size=batch_size,
        sources=sources,
    )
    if not training:
        ds = by_epoch(examples, cache=cache)(None).batch(batch_size)
        if num_classes:

            def one_hot(images, y):
                return augment_lib.finish_batch(images, y, num_classes)

            ds = ds.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)
    if resample == "balanced":
        # Class-balanced batches for an imbalanced split: one stream per class (each cached
        # and shuffled on its own) repeating within the epoch, drawn with equal probability.
        # Rare classes' images come round more often than common ones'.
        # (Record sources are read once per class to fill the caches.)
        per_class = [
            by_epoch(
                examples.take(np.flatnonzero(examples.labels == c)),
                cache=cache if cache in ("memory", "off") else f"{cache}-class{c}",
            )
            for c in np.flatnonzero(examples.counts())
        ]
        epoch_examples = balanced_epochs(per_class, seed)
    else:
        epoch_examples = by_epoch(examples, cache=cache)
    ds = epoch_stream(
        epoch_examples, batch_size, epoch_batches or len(examples) // batch_size, start, until_epoch
    )
    # Everything random from here on draws from the batch's number (`augment.BatchSeeds`).
    seeds = augment_lib.BatchSeeds(seed)
    augmenter = augment_lib.build_augmenter(augment, seeds)
    crop = "crop" in augment
    mixer = augment_lib.build_mixer(mixing, seeds)

    def finish_batch(number, batch):
        images, y = batch
        seeds.start(number)
        if augmenter is not None or crop:
            # Batch-level augmentation: one vectorised call per batch instead of one per image.
            augmented = tf.cast(images, tf.float32)
            if crop:
                augmented = augment_lib.random_resized_crop(augmented, seeds)
            if augmenter is not None:
                augmented = augmenter(augmented)
            images = tf.cast(tf.clip_by_value(augmented, 0, 255), tf.uint8)
        if not num_classes:
            return images, y
        # One-hot labels (soft after mixing) and per-example weights.
        return augment_lib.finish_batch(images, y, num_classes, class_weights, mixer)

    ds = ds.map(finish_batch, num_parallel_calls=tf.data.AUTOTUNE)
    # Overlap input work with the training step.
    return ds.prefetch(tf.data.AUTOTUNE)


def encoded_samples(examples: Examples, count: int) -> list[bytes]:
    """The first `count` examples as encoded image bytes (file contents, or PNG of the pixels)."""
    if examples.pixels is not None:
        return [tf.io.encode_png(p).numpy() for p in examples.pixels[:count]]
    subset = examples.take(np.arange(min(count, len(examples))))
    return [encoded for _, encoded in encoded_images(subset).as_numpy_iterator()]
