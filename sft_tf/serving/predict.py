"""Loading an export and predicting image files with it, as a serving client would: only
TensorFlow and the SavedModel, one result (or one reason) per file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft_tf.errors import UserError
from sft_tf.serving.layout import LABELS_FILE


def load_signature(export_dir: str | Path, name: str = "serving_default"):
    """Loads an export and returns one of its signatures, as a serving client would.

    Raises:
      UserError: the folder holds no loadable SavedModel (missing or corrupt saved_model.pb,
        missing variables) or lacks the signature.
    """
    from google.protobuf.message import DecodeError

    path = Path(export_dir)
    fix = "re-export it (sft-tf export --workdir=RUN_DIR)"
    if not (path / "saved_model.pb").is_file():
        raise UserError(f"cannot load the SavedModel in {path}: it has no saved_model.pb; {fix}")
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, DecodeError, tf.errors.OpError) as e:
        reason = (getattr(e, "message", None) or str(e)).strip().splitlines()[0]
        if reason.startswith("Cannot parse file"):  # "...: Error parsing message ...: WHY"
            reason = f"saved_model.pb is corrupt ({reason.rsplit(': ', 1)[-1].rstrip('.')})"
        raise UserError(f"cannot load the SavedModel in {path}: {reason[:200]}; {fix}") from e
    if name not in loaded.signatures:
        raise UserError(
            f"the SavedModel in {path} has no {name} signature (it has "
            f"{', '.join(loaded.signatures) or 'none'}); was it written by sft-tf? {fix}"
        )
    return loaded.signatures[name]


def _expand(paths: Sequence[str]) -> list[tuple[str, bool]]:
    """[(path, is an empty folder)] in order: folders become the files inside, recursively.

    Hidden files and folders (.DS_Store, .git) are left out, as the folder: data source does.
    """
    out = []
    for arg in paths:
        folder = Path(arg)
        if not folder.is_dir():
            out.append((arg, False))
            continue
        inside = sorted(
            str(f)
            for f in folder.rglob("*")
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts)
        )
        out += [(f, False) for f in inside] or [(arg, True)]
    return out


def _why_not_predicted(error: tf.errors.OpError) -> str:
    """The one line that says why serving_default rejected an image, from TF's error text."""
    # "Graph execution error:\n\nDetected at node ...\n<stack traces unavailable>\nWHY\n\t [[..."
    lines = [
        line.strip()
        for line in error.message.splitlines()
        if line.strip()
        and not line.strip().startswith(("[[", "Graph execution error", "Detected at node", "<"))
    ]
    why = lines[-1] if lines else error.message.strip()
    if "Unknown image file format" in why:
        return "not an image (unrecognised format; JPEG, PNG, GIF, BMP and WebP are read)"
    if "Invalid PNG data" in why or "jpeg::Uncompress failed" in why or "Invalid JPEG" in why:
        return f"corrupt or truncated image ({why[:120]})"
    return f"cannot decode: {why[:200]}"


def predict_files(export_dir: str | Path, paths: Sequence[str]) -> list[dict]:
    """Runs the export's serving_default signature on image files, one result per file.

    Only TensorFlow and the SavedModel are used, as a serving client would.

    Args:
      export_dir: a version folder.
      paths: image files, or folders (every file inside, recursively, except hidden ones).

    Returns:
      In the order given, dicts with "file" and either "classes" and "scores" (top-k) or
      "error" (one line: "empty file", "cannot read: ...", "not an image ..."); a folder with
      no files is one result with an error. A multi-label export's results also have
      "labels": {name: probability} for the labels it predicts present (at their thresholds).

    Raises:
      UserError: there are no files at all (every folder given is empty), or the export cannot
        be loaded.
    """
    expanded = _expand(paths)
    if all(empty for _, empty in expanded):
        folders = [path for path, _ in expanded]
        where = f"{', '.join(folders)} {'has' if len(folders) == 1 else 'have'} no files in it"
        raise UserError(f"nothing to predict: {where if folders else 'no files given'}")
    serve = load_signature(export_dir)
    labels = Path(export_dir) / LABELS_FILE  # multi-label outputs are named from it
    names = labels.read_text().splitlines() if labels.is_file() else []
    results = []
    for path, empty in expanded:
        if empty:
            results.append({"file": path, "error": "folder has no files"})
            continue
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                encoded = f.read()
        except (tf.errors.OpError, OSError) as e:
            # gfile says "PATH; No such file or directory": keep the reason.
            reason = (getattr(e, "message", None) or e.strerror or str(e)).split("; ")[-1]
            results.append({"file": path, "error": f"cannot read: {reason.strip()}"})
            continue
        if not encoded:
            results.append({"file": path, "error": "empty file (0 bytes)"})
            continue
        try:
            out = serve(image_bytes=tf.constant([encoded]))
        except tf.errors.OpError as e:
            results.append({"file": path, "error": _why_not_predicted(e)})
            continue
        results.append(_result(path, out, names))
    return results


def _result(path: str, out: dict, names: Sequence[str]) -> dict:
    result = {
        "file": path,
        "classes": [c.decode() for c in out["classes"].numpy()[0]],
        "scores": [round(float(s), 4) for s in out["scores"].numpy()[0]],
    }
    if "predicted" in out:  # multi-label: every label at or above its threshold
        probabilities = out["probabilities"].numpy()[0]
        present = np.flatnonzero(out["predicted"].numpy()[0])
        ranked = present[np.argsort(-probabilities[present], kind="stable")]
        name = (lambda i: names[i]) if len(names) == len(probabilities) else str
        result["labels"] = {name(i): round(float(probabilities[i]), 4) for i in ranked}
    return result
