"""Dataset specs -> labelled examples -> tf.data pipelines of (uint8 images, int32 labels).

A spec string names where a split comes from:

  folder:PATH               one sub-folder per class (sorted names are the classes), images
                            anywhere below it; PATH may be local or gs://.
  fashion_mnist:SPLIT[:DIR] the Fashion-MNIST IDX files (SPLIT is train or test). DIR defaults to
                            Debian's /usr/share/datasets/fashion-mnist, then Keras's cache
                            ~/.keras/datasets/fashion-mnist.

Loading a spec gives `Examples`: file paths or in-memory pixels plus labels, cheap to subset
(classes, few-shot sampling) before any image is decoded. `build_dataset` turns them into the
batches every trainer here consumes: `(uint8 [B, H, W, 3], int32 [B])` with static shapes.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf.errors import UserError

SPEC_KINDS = ("folder", "fashion_mnist")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
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
AUGMENTATIONS = ("flip", "translate", "rotate", "zoom", "contrast")


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed dataset spec string."""

    kind: str
    path: str
    split: str = ""


def parse_spec(spec: str, field: str = "spec") -> Spec:
    """Parses a dataset spec string.

    Args:
      spec: e.g. "folder:/data/train" or "fashion_mnist:test".
      field: the config field it came from, for error messages.

    Returns:
      The parsed `Spec`.

    Raises:
      UserError: unknown kind or missing parts.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SPEC_KINDS or not rest:
        raise UserError(
            f"{field}={spec!r} is not a dataset spec; use one of "
            "folder:PATH, fashion_mnist:train|test[:DIR]"
        )
    if kind == "folder":
        return Spec("folder", rest)
    split, _, directory = rest.partition(":")
    if split not in _FASHION_MNIST_FILES:
        raise UserError(f"{field}={spec!r}: Fashion-MNIST split must be 'train' or 'test'")
    return Spec("fashion_mnist", directory, split)


@dataclasses.dataclass(frozen=True)
class Examples:
    """A labelled split before decoding: either file paths or in-memory pixels.

    Attributes:
      class_names: names of labels 0..n-1.
      labels: int32 [N].
      paths: str [N] for file sources, else None.
      pixels: uint8 [N, H, W, C] for in-memory sources, else None.
      origin: the spec it came from, for messages.
    """

    class_names: tuple[str, ...]
    labels: np.ndarray
    paths: np.ndarray | None = None
    pixels: np.ndarray | None = None
    origin: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Examples:
        """Returns the examples at `indices`, same classes."""
        return dataclasses.replace(
            self,
            labels=self.labels[indices],
            paths=None if self.paths is None else self.paths[indices],
            pixels=None if self.pixels is None else self.pixels[indices],
        )

    def counts(self) -> np.ndarray:
        """Examples per class, int [num_classes]."""
        return np.bincount(self.labels, minlength=len(self.class_names))


def load_examples(spec: str, field: str = "spec") -> Examples:
    """Lists a split's examples (no image is decoded here).

    Raises:
      UserError: the path does not exist, has no classes or a class has no images.
    """
    parsed = parse_spec(spec, field)
    if parsed.kind == "folder":
        return _load_folder(parsed.path, spec, field)
    return _load_fashion_mnist(parsed.split, parsed.path, spec, field)


def _load_folder(root: str, spec: str, field: str) -> Examples:
    if not tf.io.gfile.isdir(root):
        raise UserError(f"{field}={spec!r}: {root} is not a directory")
    # tf.io.gfile rather than os: the same code lists gs:// buckets for TPUs.
    class_names = sorted(
        name.rstrip("/")
        for name in tf.io.gfile.listdir(root)
        if tf.io.gfile.isdir(os.path.join(root, name)) and not name.startswith(".")
    )
    if not class_names:
        raise UserError(f"{field}={spec!r}: {root} has no class sub-folders (one per class)")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        found = sorted(
            os.path.join(dirpath, f)
            for dirpath, _, files in tf.io.gfile.walk(os.path.join(root, name))
            for f in files
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
        if not found:
            raise UserError(
                f"{field}={spec!r}: class folder {os.path.join(root, name)} has no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove the folder"
            )
        paths += found
        labels += [label] * len(found)
    return Examples(
        class_names=tuple(class_names),
        labels=np.asarray(labels, np.int32),
        paths=np.asarray(paths),
        origin=spec,
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


def decode_image(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes -> RGB uint8 [image_size, image_size, 3].

    The training pipeline and the exported serving signature both call this, so a served
    image is decoded and resized exactly as it was in training.
    """
    # expand_animations=False: a GIF gives its first frame, so every image has rank 3.
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return resize(image, image_size)


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Any-size uint8 [H, W, C] (C = 1 or 3) -> RGB uint8 [image_size, image_size, 3]."""
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    # antialias: without it, shrinking a large photo aliases badly.
    image = tf.image.resize(image, [image_size, image_size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def parse_augment(text: str, field: str = "augment") -> list[str]:
    """Splits and checks a comma-separated augmentation list."""
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in AUGMENTATIONS]
    if unknown:
        raise UserError(
            f"{field}={text!r}: unknown {unknown}; choose from {', '.join(AUGMENTATIONS)}"
        )
    return names


def build_augmenter(names: Sequence[str], seed: int) -> keras.Sequential | None:
    """Keras preprocessing layers for the chosen augmentations, or None for none."""
    choices = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed),
        "translate": lambda: keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
        "rotate": lambda: keras.layers.RandomRotation(0.05, seed=seed),
        "zoom": lambda: keras.layers.RandomZoom(0.1, seed=seed),
        "contrast": lambda: keras.layers.RandomContrast(0.2, seed=seed),
    }
    if not names:
        return None
    return keras.Sequential([choices[n]() for n in names], name="augment")


def build_dataset(
    examples: Examples,
    image_size: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Sequence[str] = (),
) -> tf.data.Dataset:
    """The input pipeline: decode -> resize -> cache -> shuffle -> batch -> augment -> prefetch.

    Args:
      examples: what to read.
      image_size: output height and width.
      batch_size: the global batch size (a strategy splits it over replicas).
      training: shuffle every epoch, drop the last partial batch (static shapes), augment.
      seed: shuffling and augmentation seed.
      augment: augmentation names (see AUGMENTATIONS); only used when training.

    Returns:
      A dataset of (uint8 [B, S, S, 3], int32 [B]).

    Raises:
      UserError: training on fewer examples than one batch.
    """
    if training and len(examples) < batch_size:
        raise UserError(
            f"{examples.origin!r} has {len(examples)} training examples, fewer than one batch of "
            f"data.global_batch_size={batch_size}; lower the batch size"
        )
    labels = tf.constant(examples.labels, tf.int32)
    if examples.paths is not None:
        ds = tf.data.Dataset.from_tensor_slices((examples.paths, labels))
        ds = ds.map(
            lambda path, label: (decode_image(tf.io.read_file(path), image_size), label),
            # Decoding dominates the first epoch; spread it over all cores.
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = tf.data.Dataset.from_tensor_slices((examples.pixels, labels))
        ds = ds.map(
            lambda image, label: (resize(image, image_size), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    # Cache decoded, resized pixels: later epochs skip file reads and decoding entirely.
    ds = ds.cache()
    if training:
        # A full-size buffer over the cached pixels: a uniform shuffle, new order every epoch.
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    # drop_remainder for training: static batch shapes, required by TPUs and replica splits.
    ds = ds.batch(batch_size, drop_remainder=training)
    augmenter = build_augmenter(augment, seed) if training else None
    if augmenter is not None:
        # Batch-level augmentation: one vectorised call per batch instead of one per image.
        ds = ds.map(
            lambda images, y: (
                tf.cast(tf.clip_by_value(augmenter(tf.cast(images, tf.float32)), 0, 255), tf.uint8),
                y,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    # Overlap input work with the training step.
    return ds.prefetch(tf.data.AUTOTUNE)


def encoded_samples(examples: Examples, count: int) -> list[bytes]:
    """The first `count` examples as encoded image bytes (file contents, or PNG of the pixels)."""
    out = []
    for i in range(min(count, len(examples))):
        if examples.paths is not None:
            out.append(tf.io.gfile.GFile(examples.paths[i], "rb").read())
        else:
            out.append(tf.io.encode_png(examples.pixels[i]).numpy())
    return out
