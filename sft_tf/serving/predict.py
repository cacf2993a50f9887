"""Loading an export and predicting image files with it, as a serving client would: only
TensorFlow and the SavedModel, one result (or one reason) per file.

A file over the export's pixel limit is not sent: its header is read here with the reader the
export's graph uses, and it gets the reason the export would answer. Exports written before
the limit was recorded (and before their signatures checked it) would decode any size in full,
so the limit training applies by default stands in for theirs.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft_tf.config.schema import DEFAULT_MAX_IMAGE_PIXELS
from sft_tf.errors import UserError
from sft_tf.log import Progress
from sft_tf.serving.layout import LABELS_FILE, MANIFEST_FILE
from sft_tf.serving.signatures import pixel_limit_error


def load_signature(export_dir: str | Path, name: str = "serving_default"):
    """Loads an export and returns one of its signatures, as a serving client would.

    Raises:
      UserError: the folder holds no loadable SavedModel (missing or corrupt saved_model.pb,
        missing variables) or lacks the signature.
    """
    return load_export(export_dir, name).signatures[name]


def load_export(export_dir: str | Path, signature: str = "serving_default"):
    """The loaded SavedModel of an export that has `signature`; raises as `load_signature`."""
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
    if signature not in loaded.signatures:
        raise UserError(
            f"the SavedModel in {path} has no {signature} signature (it has "
            f"{', '.join(loaded.signatures) or 'none'}); was it written by sft-tf? {fix}"
        )
    return loaded


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
      "error" (one line: "empty file", "cannot read: ...", "not an image ...", "image is W x H
      = N pixels, above this model's limit ..."); a folder with no files is one result with an
      error. A multi-label export's results also have "labels": {name: probability} for the
      labels it predicts present (at their thresholds).

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
    refuse = _limit_check(pixel_limit(export_dir))
    labels = Path(export_dir) / LABELS_FILE  # multi-label outputs are named from it
    names = labels.read_text().splitlines() if labels.is_file() else []
    results: list[dict | None] = []
    batch: list[tuple[int, str, bytes]] = []  # (index in results, path, bytes) of read files
    # On stderr (stdout holds the results), and only past one batch: a few files never show it.
    delay = 3.0 if len(expanded) > PREDICT_BATCH else float("inf")
    progress = Progress("Predicting", len(expanded), "files", delay=delay, stream=sys.stderr)
    with progress:
        for path, empty in expanded:
            read = {"file": path, "error": "folder has no files"} if empty else _read(path, refuse)
            if isinstance(read, bytes):
                batch.append((len(results), path, read))
                read = None  # filled in with its batch
            results.append(read)
            if len(batch) == PREDICT_BATCH or (batch and len(results) == len(expanded)):
                for (i, _, _), result in zip(batch, _predict_batch(serve, batch, names)):
                    results[i] = result
                batch = []
            progress.update(len(results) - len(batch))
    return results


# Files a serving call: the model runs a batch of small images ~5x faster per image than one
# at a time (measured with a MobileNetV2 export). A batch that fails is retried a file at a
# time, so one bad file costs its batch a second pass and names itself.
PREDICT_BATCH = 32


def pixel_limit(export_dir: str | Path) -> int:
    """The pixel limit an export was written with (its manifest's max_image_pixels); for an
    export from before it was recorded, or without a readable manifest, training's default."""
    try:
        manifest = json.loads((Path(export_dir) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return DEFAULT_MAX_IMAGE_PIXELS
    limit = manifest.get("max_image_pixels") if isinstance(manifest, dict) else None
    return limit if isinstance(limit, int) else DEFAULT_MAX_IMAGE_PIXELS


@functools.cache
def _limit_check(max_pixels: int) -> Callable[[bytes], str]:
    """encoded bytes -> "" or why the export refuses them (`signatures.pixel_limit_error`)."""
    # Traced once (~0.3 s): eager, the header parse's ops took 20 ms a file, traced 1 ms.
    traced = tf.function(
        lambda encoded: pixel_limit_error(encoded, max_pixels),
        input_signature=[tf.TensorSpec([], tf.string)],
        autograph=False,
    )

    def check(encoded: bytes) -> str:
        try:
            return traced(tf.constant(encoded)).numpy().decode()
        except tf.errors.OpError:  # a corrupt JPEG header: the serving call names the fault
            return ""

    return check


def _read(path: str, refuse: Callable[[bytes], str]) -> bytes | dict:
    """The file's bytes, or its result when it cannot be read, is empty or is refused."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            encoded = f.read()
    except (tf.errors.OpError, OSError) as e:
        # gfile says "PATH; No such file or directory": keep the reason.
        reason = (getattr(e, "message", None) or e.strerror or str(e)).split("; ")[-1]
        return {"file": path, "error": f"cannot read: {reason.strip()}"}
    if not encoded:
        return {"file": path, "error": "empty file (0 bytes)"}
    why = refuse(encoded)
    return {"file": path, "error": why} if why else encoded


def _predict_batch(serve, batch: list[tuple[int, str, bytes]], names) -> list[dict]:
    """One result per (index, path, bytes) of `batch`, in order."""
    try:
        out = serve(image_bytes=tf.constant([encoded for _, _, encoded in batch]))
    except tf.errors.OpError as e:
        if len(batch) == 1:
            return [{"file": batch[0][1], "error": _why_not_predicted(e)}]
        return [result for item in batch for result in _predict_batch(serve, [item], names)]
    out = {key: value.numpy() for key, value in out.items()}
    return [_result(path, out, names, row) for row, (_, path, _) in enumerate(batch)]


def _result(path: str, out: dict, names: Sequence[str], row: int) -> dict:
    """`path`'s result from row `row` of a serving_default call's outputs (NumPy arrays)."""
    if "error" in out and out["error"][row]:  # refused by the export (older ones lack `error`)
        return {"file": path, "error": out["error"][row].decode()}
    result = {
        "file": path,
        "classes": [c.decode() for c in out["classes"][row]],
        "scores": [round(float(s), 4) for s in out["scores"][row]],
    }
    if "predicted" in out:  # multi-label: every label at or above its threshold
        probabilities = out["probabilities"][row]
        present = np.flatnonzero(out["predicted"][row])
        ranked = present[np.argsort(-probabilities[present], kind="stable")]
        name = (lambda i: names[i]) if len(names) == len(probabilities) else str
        result["labels"] = {name(i): round(float(probabilities[i]), 4) for i in ranked}
    return result
