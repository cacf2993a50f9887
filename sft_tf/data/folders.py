"""`folder:` datasets: one sub-folder per class, listed once per real folder, saying what it
leaves out (hidden files, extensions TF cannot decode, folder links that loop).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from sft_tf.data.examples import Examples
from sft_tf.errors import UserError


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


def load_folder(root: str, spec: str, field: str) -> Examples:
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
    _check_not_a_dataset_root(root, spec, field, class_names)
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


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# Folder names datasets give their splits, and the config field each belongs in.
SPLIT_FOLDERS = {
    **dict.fromkeys(("train", "training"), "train"),
    **dict.fromkeys(("val", "valid", "validation", "dev"), "validation"),
    **dict.fromkeys(("test", "testing", "eval", "evaluation"), "test"),
}


def _check_not_a_dataset_root(root: str, spec: str, field: str, class_names: list[str]) -> None:
    """Refuses a dataset's root given as a folder of classes: with train/ and test/ (val/, ...)
    holding the class folders, the "classes" would be the splits, and the model would learn
    to tell training images from test images. Sub-folders that are not all split names, or
    that hold no folders, are classes as usual (a class may be called "train")."""
    if any(n.lower() not in SPLIT_FOLDERS for n in class_names):  # (one alone: not a dataset)
        return
    for name in class_names:
        inside = os.path.join(root, name)
        if not any(tf.io.gfile.isdir(os.path.join(inside, n)) for n in tf.io.gfile.listdir(inside)):
            return
    section = field.rsplit(".", 1)[0]  # config.data, or config.pretrain (no validation field)
    order = ("train", "validation", "test")
    fields = sorted(
        ((SPLIT_FOLDERS[n.lower()], n) for n in class_names),
        key=lambda f: (order.index(f[0]), f[1]),
    )
    fix = " ".join(
        f"--{section}.{split}=folder:{os.path.join(root, name)}"
        for split, name in fields
        if section != "config.pretrain" or split != "validation"
    )
    raise UserError(
        f"{field}={spec!r}: the sub-folders of {root} ({', '.join(class_names)}) are a dataset's "
        f"splits, each holding class folders, not classes; give each split its own spec: {fix}"
    )


# Formats people keep images in that TF cannot decode, with what to do about them.
UNSUPPORTED_HINTS = {
    ".tif": "TF cannot decode TIFF: convert to PNG",
    ".tiff": "TF cannot decode TIFF: convert to PNG",
    ".heic": "TF cannot decode HEIC: convert to JPEG",
}
