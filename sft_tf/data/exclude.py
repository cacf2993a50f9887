"""`data.exclude`: a text file of images to leave out of every split (e.g. the audit's
exclude_suggested.txt after review), one image name per line as `Examples.names()` gives it.

Lines and names are compared as absolute, normalised paths, so a file listed relative to the
current folder matches a split given with an absolute path, and the other way round. A line
that names no image of the data is reported, not silently ignored.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from sft_tf.data.examples import Examples
from sft_tf.errors import UserError


def read_list(path: str, field: str) -> set[str]:
    """The image names listed one per line in `path` (file paths, or `origin #position` for
    records); blank lines and # comments are skipped."""
    if not tf.io.gfile.exists(path):
        raise UserError(f"{field}={path!r}: no such file; give a text file of image paths")
    lines = tf.io.gfile.GFile(path).read().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def key(name: str) -> str:
    """What a listed line and an example's name are compared by."""
    return os.path.normpath(os.path.abspath(name))


def without(examples: Examples, excluded: set[str]) -> Examples:
    """`examples` minus those whose name `excluded` lists."""
    keys = {key(e) for e in excluded}
    keep = [i for i, name in enumerate(examples.names()) if key(name) not in keys]
    return examples if len(keep) == len(examples) else examples.take(np.asarray(keep, np.int64))


def unmatched(excluded: set[str], splits: list[Examples]) -> list[str]:
    """The listed lines that name no example of `splits`, sorted."""
    seen = {key(name) for split in splits for name in split.names()}
    return sorted(e for e in excluded if key(e) not in seen)
