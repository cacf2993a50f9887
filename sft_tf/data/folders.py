"""`folder:` datasets: one sub-folder per class, listed once per real folder, saying what it
leaves out (hidden files, extensions TF cannot decode, folder links that loop or that lead out
of their class folder into the rest of the split).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from sft_tf.data.examples import Examples
from sft_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class _Fence:
    """Where the folder links below one top folder of a split may lead (local folders only).

    A link inside a class folder that led up to the split root or into another class folder
    would list that class's images a second time under this one: trained with the wrong label.

    Attributes:
      root: the split root's real path.
      own: the real path of the top folder being listed (a class folder, or a hidden one).
      name: that folder's name in the split root.
      classes: real path -> name of every class folder of the split.
    """

    root: str
    own: str
    name: str
    classes: dict[str, str]

    def refuses(self, real: str) -> str:
        """Where a folder link to `real` leads if it must not be followed, else "".

        Followed: links within the folder itself (loops and second ways in are noted by the
        walk) and links to folders outside the split root that do not hold the folder.
        """
        if _within(real, self.own):
            return ""
        if real == self.root:
            return "up to the split root"
        if _within(self.root, real):
            return "to a folder above the split root"
        if _within(self.own, real):
            return "to a folder that holds its own folder"
        for folder, name in self.classes.items():
            if _within(real, folder):
                return f"into class folder {name!r}"
        if _within(real, self.root):
            return "to a folder of the split root outside its class folders"
        return ""


def _within(path: str, folder: str) -> bool:
    """Whether the real path `path` is `folder` or below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _images_below(folder: str, skip: str, limit: int = 1000) -> str:
    """How many images listing `folder` would find ("12 image(s)"), not following links and
    leaving out `skip` (listed anyway); past `limit` folders it stops counting (a link to /
    must not walk the disk)."""
    count = 0
    for visited, (here, dirs, files) in enumerate(os.walk(folder)):
        if visited == limit:
            return f"the images of over {limit} folders"
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _within(f"{here}/{d}", skip)]
        extensions = (os.path.splitext(f)[1].lower() for f in files if not f.startswith("."))
        count += sum(1 for e in extensions if e in IMAGE_EXTENSIONS)
    return f"{count} image(s)"


def _refused_link(path: str, real: str, seen: set[str], fence: _Fence) -> str:
    """The note for a folder link the walk does not follow, or "" to follow it."""
    where = fence.refuses(real)
    if where:
        found = _images_below(real, fence.own)
        what = "counted as hidden" if fence.name.startswith(".") else f"labelled {fence.name!r}"
        return (
            f"Warning: skipped a folder link that leads {where}: {path} -> {real} (following "
            f"it, {found} there would have been {what}); only links within a class "
            "folder or to folders outside the split root are followed"
        )
    if real not in seen:
        return ""
    above = os.path.realpath(os.path.dirname(path))
    what = "loops" if _within(above, real) else "leads to a folder already listed"
    return f"Ignored a folder link that {what}: {path} -> {real}"


def _walk_files(
    folder: str, hidden: bool, notes: list[str], fence: _Fence | None
) -> Iterator[tuple[str, bool]]:
    """(path, hidden) of every file below `folder`, following folder links but never twice.

    tf.io.gfile.walk follows a link back to a parent round and round until the path is too long
    (a class listed 41 times over). Here each real folder is listed once: first every folder
    reached without a link, under its own path, then what links add; each link left out adds a
    line to `notes`. Links out of the folder into the rest of the split are not followed
    (`_Fence`). gs:// has no links. A file is hidden when its name or a folder between it and
    `folder` starts with "." (.DS_Store, .thumbnails/, .Trash/).

    Args:
      folder: a local or gs:// folder.
      hidden: whether `folder` itself is hidden.
      notes: gets a printable line for each folder link or folder left out.
      fence: where links may lead; None for gs://.
    """
    local = fence is not None
    seen = {fence.own} if local else set()
    pending = [(folder, hidden)]
    links = []  # (path, hidden) of folder links: followed once no plain folder is left
    while pending or links:
        if not pending:
            path, is_hidden = links.pop(0)
            real = os.path.realpath(path)
            note = _refused_link(path, real, seen, fence)
            if note:
                notes.append(note)
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


def _fences(root: str, names: list[str]) -> dict[str, _Fence | None]:
    """Each top folder's `_Fence` (None on gs://, which has no links)."""
    if "://" in root:
        return dict.fromkeys(names)
    real_root = os.path.realpath(root)
    reals = {name: os.path.realpath(os.path.join(root, name)) for name in names}
    classes = {real: name for name, real in reals.items() if not name.startswith(".")}
    return {name: _Fence(real_root, reals[name], name, classes) for name in names}


def _class_files(folder: str, fence: _Fence | None, notes: list[str]):
    """The image paths below a class folder (sorted), and how many hidden files and files of
    each other extension it holds."""
    found, hidden, extensions = [], 0, Counter()
    for path, is_hidden in _walk_files(folder, False, notes, fence):
        extension = os.path.splitext(path)[1].lower()
        if is_hidden:
            hidden += 1
        elif extension in IMAGE_EXTENSIONS:
            found.append(path)
        else:
            extensions[extension or "(no extension)"] += 1
    return sorted(found), hidden, extensions


def load_folder(root: str, spec: str, field: str) -> Examples:
    """Lists a folder of class folders: every image below `root/<class>/` has that class.

    Folder links are followed within a class folder and out of the split root, never up to
    the root or into another class folder (`_Fence`): what is skipped, and why, is in the
    notes. A file reached under two classes (a file link, a hard link) is listed under both;
    the audit makes that a problem.

    Raises:
      UserError: `root` is no folder, has no class folders, is a dataset's root of split
        folders, or a class folder has no images.
    """
    if not tf.io.gfile.isdir(root):
        raise UserError(f"{field}={spec!r}: {root} is not a directory")
    # tf.io.gfile rather than os: the same code lists gs:// buckets for TPUs.
    folders, notes = [], []
    hidden = outside = 0
    for name in sorted(name.rstrip("/") for name in tf.io.gfile.listdir(root)):
        if tf.io.gfile.isdir(os.path.join(root, name)):
            folders.append(name)
        elif name.startswith("."):
            hidden += 1
        else:
            outside += 1
    class_names = [name for name in folders if not name.startswith(".")]
    if not class_names:
        raise UserError(f"{field}={spec!r}: {root} has no class sub-folders (one per class)")
    _check_not_a_dataset_root(root, spec, field, class_names)
    fences = _fences(root, folders)
    for name in folders:
        if name.startswith("."):
            # Not a class (.Trash, .git): its files are counted, never labelled.
            hidden += sum(
                1 for _ in _walk_files(os.path.join(root, name), True, notes, fences[name])
            )
    paths, labels, extensions = [], [], Counter()
    for label, name in enumerate(class_names):
        found, class_hidden, class_extensions = _class_files(
            os.path.join(root, name), fences[name], notes
        )
        if not found:
            ignored = _ignored_summary(class_hidden, class_extensions)
            raise UserError(
                f"{field}={spec!r}: class folder {os.path.join(root, name)} has no images "
                f"({', '.join(IMAGE_EXTENSIONS)}"
                + (f"; ignored there: {ignored}" if ignored else "")
                + "); add some or remove the folder"
            )
        paths += found
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
