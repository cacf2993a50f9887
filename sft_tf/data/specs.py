"""Dataset spec strings (`folder:PATH`, `tfds:NAME[:SPLIT]`, `tfrecord:GLOB`, `csv:PATH[:SPLIT]`,
`fashion_mnist:SPLIT[:DIR]`, `split:FRACTION`), parsed and checked before anything is read.
"""

from __future__ import annotations

import dataclasses
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
        raise UserError(
            f"{field}={spec!r} is not a dataset spec; use one of {SPEC_HELP} "
            "(or split:FRACTION for data.validation)"
        )
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


def _csv_path_and_split(rest: str) -> tuple[str, str]:
    """PATH[:SPLIT] -> (PATH, SPLIT): the last colon starts a split value unless what follows it
    holds a slash (gs://bucket/labels.csv has a colon of its own) or nothing precedes it."""
    path, sep, split = rest.rpartition(":")
    if not sep or not path or "/" in split:
        return rest, ""
    return path, split
