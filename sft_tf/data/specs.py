"""Dataset spec strings, parsed and checked before anything is read.

A spec string names where a split comes from:

  folder:PATH               one sub-folder per class (sorted names are the classes), images
                            anywhere below it; PATH may be local or gs://.
  tfds:NAME[:SPLIT]         a TFDS dataset (SPLIT defaults to train and takes TFDS slicing,
                            e.g. train[:80%]); the image and label come from the builder's
                            supervised keys, class names from its label feature.
  tfrecord:GLOB             tf.train.Example records with image/encoded, image/class/label and
                            optionally image/class/text (TF Model Garden's layout).
  csv:PATH[:SPLIT]          a CSV of image paths and labels (data.csv_*_column; `csv_source`).
  fashion_mnist:SPLIT[:DIR] the Fashion-MNIST IDX files (SPLIT is train or test). DIR defaults to
                            Debian's /usr/share/datasets/fashion-mnist, then Keras's cache
                            ~/.keras/datasets/fashion-mnist.
  split:FRACTION            validation only: a seeded hold-out of the training set (`holdout`).

A leading ~ in PATH, GLOB and DIR is the home folder. A folder listing follows folder links once
each and says what it left out: hidden files and folders, extensions TF cannot decode, files
outside the class folders, links that loop.
"""

from __future__ import annotations

import dataclasses
import difflib
import os

from sft_tf.errors import UserError

SPEC_KINDS = ("folder", "tfds", "tfrecord", "csv", "fashion_mnist", "split")


SPEC_HELP = (
    "folder:PATH, tfds:NAME[:SPLIT], tfrecord:GLOB, csv:PATH[:SPLIT], "
    "fashion_mnist:train|test[:DIR]"
)


FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed dataset spec string.

    Attributes:
      kind: one of SPEC_KINDS.
      path: folder, TFDS dataset name, TFRecord glob, CSV file or Fashion-MNIST directory.
      split: TFDS split (with slicing), the CSV's split value ("" for every row), Fashion-MNIST
        split, or the hold-out fraction.
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
        raise UserError(f"{field}={spec!r} is not a dataset spec; {_spec_hint(spec)}")
    if kind in ("folder", "tfrecord"):
        # The shell leaves ~ alone inside --config.data.train=folder:~/x; expand it here, once.
        return Spec(kind, os.path.expanduser(rest))
    if kind == "csv":
        path, split = _csv_path_and_split(rest)
        return Spec("csv", os.path.expanduser(path), split)
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
    if split not in FASHION_MNIST_FILES:
        raise UserError(f"{field}={spec!r}: Fashion-MNIST split must be 'train' or 'test'")
    return Spec("fashion_mnist", os.path.expanduser(directory), split)


def _spec_hint(spec: str) -> str:
    """What to write instead: the kind a mistyped one is closest to, or the spec a bare local
    folder or CSV file path was meant to be."""
    kind, sep, rest = spec.partition(":")
    close = difflib.get_close_matches(kind, SPEC_KINDS, n=1) if sep and rest else []
    if close:
        return f"did you mean {close[0]}:{rest}?"
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        return f"a folder of class folders is folder:{spec}"
    if spec.lower().endswith(".csv") or os.path.isfile(path):
        return f"a CSV of image paths and labels is csv:{spec}"
    return f"use one of {SPEC_HELP} (or split:FRACTION for data.validation)"


def _csv_path_and_split(rest: str) -> tuple[str, str]:
    """PATH[:SPLIT] -> (PATH, SPLIT): the last colon starts a split value unless what follows it
    holds a slash (gs://bucket/labels.csv has a colon of its own) or nothing precedes it."""
    path, sep, split = rest.rpartition(":")
    if not sep or not path or "/" in split:
        return rest, ""
    return path, split
