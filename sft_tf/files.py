"""Atomic writers: a file appears whole under its name or not at all.

Each writes a hidden temp file beside the target and renames it over the target (a rename
within one folder is atomic on POSIX), so a crash, a kill or a full disk mid-write never
leaves a truncated state.json, history or weights file for the next run to trip over.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # TensorFlow-free at import: the CLI reads run records before TF loads
    import keras


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with _removed_on_failure(partial):
        partial.write_text(text)
        os.replace(partial, path)


def write_json_atomic(path: Path, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def save_weights_atomic(model: keras.Model, path: Path) -> None:
    """Writes a Keras weights file the same way."""
    path = Path(path)
    # Keras insists on the .weights.h5 suffix; the leading dot keeps the temp file hidden.
    partial = path.with_name(f".partial-{path.name}")
    with _removed_on_failure(partial):
        model.save_weights(partial)
        os.replace(partial, path)


@contextlib.contextmanager
def _removed_on_failure(partial: Path):
    """A write that fails (disk full, file too large, Ctrl-C) leaves no half-written temp file."""
    try:
        yield
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
