"""SavedModel export in TF Serving's versioned layout, and prediction from such an export.

Layout: <root>/<name>/<version>/ with an integer version above every existing one. The model is
written to a hidden sibling folder (TF Serving only loads integer-named folders), reloaded and
compared with the in-memory model through every signature, and only then renamed into place,
so TF Serving never sees a half-written or wrong version.

Signatures (dynamic batch dimension):
  serving_default     image_bytes: string [None]   encoded JPEG/PNG/GIF/BMP of any size
  serving_images      images: uint8 [None, None, None, 3]   pixels of any size
  serving_tf_example  examples: string [None]   serialized tf.train.Example, image/encoded
each returning probabilities [None, C] float32, classes [None, k] string (top-k class names),
class_ids [None, k] int32, scores [None, k] float32 and error [None] string. A multi-label
model's probabilities are independent sigmoids, and it also returns predicted [None, C] int32: 1
where a label's probability reaches that label's threshold (tuned on validation, listed in the
manifest). `error` is "" for every answered row; an encoded image with more pixels than the
export's limit (data.max_image_pixels, width x height read from its header; in the manifest as
max_image_pixels) is not decoded, and its row holds the reason in `error`, "" classes, class
ids -1 and zero probabilities and scores, while the batch's other rows are answered as usual.
(Exports written before `error` existed lack it and decode any size.)

Inside each version: assets/labels.txt (class names, a SavedModel asset), assets.extra/
sft_tf.json (the manifest: what was trained and how well) and assets.extra/
tf_serving_warmup_requests (PredictionLog records TF Serving replays before serving); with
TFLite or ONNX variants, assets.extra/tflite/ and assets.extra/onnx/, each scored by the
accuracy guard and timed before publishing (`variants.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf import __version__
from sft_tf.config.schema import DEFAULT_MAX_IMAGE_PIXELS
from sft_tf.errors import UserError
from sft_tf.log import say
from sft_tf.serving import signatures, variants
from sft_tf.serving.layout import (
    LABELS_FILE,
    MANIFEST_FILE,
    SIGNATURES,
    STAGING_PREFIX,
    TFLITE_DIR,
    version_folders,
)

# Defined beside the export contract, where the CLI reads them before TensorFlow loads; still
# export.resolve_export and export.versions for callers (the notebook among them).
from sft_tf.serving.layout import resolve_export as resolve_export
from sft_tf.serving.layout import versions as versions
from sft_tf.serving.parity import _sample_images, verify_export


def _remove_stale_staging(root: Path) -> None:
    """Deletes staging folders left by exporters that died (their pid is gone)."""
    for folder in root.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX) :]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


def _listing(names: Sequence[str], shown: int = 6) -> str:
    """A label list short enough for a one-line message: [a, b, c, + N more]."""
    names = list(names)
    more = f", + {len(names) - shown} more" if len(names) > shown else ""
    return f"[{', '.join(names[:shown])}{more}]"


def check_class_change(
    model_root: str | Path,
    class_names: Sequence[str],
    allow: bool,
    field: str = "config.export.allow_class_change",
) -> None:
    """Refuses a model whose class names differ from those of the newest published version.

    TF Serving switches to the highest version without notice, so a model with another label
    set under the same name would silently change what clients get back. The same names in
    another order count as a change (class ids would move).

    Args:
      model_root: <export.dir>/<name>, the folder holding the integer versions.
      class_names: the new model's class names, in output order.
      allow: publish anyway.
      field: the setting that allows it, named in the message.

    Raises:
      UserError: the newest version has different class names and `allow` is False.
    """
    root = Path(model_root)
    folders = version_folders(root)
    found = sorted(folders)
    if allow or not found:
        return
    labels = folders[found[-1]] / LABELS_FILE
    if not labels.is_file():  # not written by sft-tf: no label set to compare with
        return
    served, new = labels.read_text().splitlines(), list(class_names)
    if served == new:
        return
    added, gone = [c for c in new if c not in served], [c for c in served if c not in new]
    if not added and not gone:
        change = "the same names in another order"
    else:
        change = "; ".join(
            f"{what} {_listing(names, 3)}"
            for what, names in (("new", added), ("gone", gone))
            if names
        )
    raise UserError(
        f"{root}: the newest version {found[-1]} serves classes {_listing(served)}, this model "
        f"has {_listing(new)} ({change}); TF Serving would switch label sets without notice. "
        f"Set --{field}=true to publish it as version {found[-1] + 1} anyway, or use another "
        "config.name"
    )


def prune_versions(model_root: str | Path, keep: int) -> list[int]:
    """Deletes all but the newest `keep` versions (keep <= 0 keeps all), says which; returns
    the deleted."""
    folders = version_folders(model_root)
    doomed = sorted(folders)[:-keep] if keep > 0 else []
    for version in doomed:
        shutil.rmtree(folders[version])
    if doomed:
        removed = ", ".join(map(str, doomed))
        say(f"Removed version(s) {removed} of {model_root} (export.keep={keep})")
    return doomed


def _manifest(
    described: dict | None,
    class_names,
    image_size,
    tflite,
    worst,
    *,
    top_k,
    resize_method,
    thresholds,
    max_image_pixels,
) -> dict:
    """assets.extra/sft_tf.json: what the caller described, and what the export itself is
    (the serving settings as keywords, as `export_for_serving` collects them)."""
    return {
        **(described or {}),
        "class_names": list(class_names),
        "multi_label": thresholds is not None,
        # Multi-label only: label name -> the probability from which `predicted` is 1.
        "thresholds": (
            None
            if thresholds is None
            else {name: round(float(t), 4) for name, t in zip(class_names, thresholds)}
        ),
        "image_size": image_size,
        "resize_method": resize_method,
        "input_dtype": "uint8 pixels 0..255; preprocessing is inside the model",
        # Encoded images with more pixels (width x height) are refused, row by row, undecoded.
        "max_image_pixels": max_image_pixels,
        "signatures": list(SIGNATURES),
        "top_k": min(top_k, len(class_names)),
        "tflite": f"{TFLITE_DIR}/model.tflite ({tflite})" if tflite else None,
        "tflite_quantization": tflite or None,
        "parity_max_abs_diff": worst,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {
            "sft_tf": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def export_for_serving(
    model: keras.Model,
    class_names: Sequence[str],
    image_size: int,
    model_root: str | Path,
    top_k: int = 5,
    check_images: Sequence[bytes] = (),
    manifest: dict | None = None,
    keep: int = 0,
    tflite: str = "",
    resize_method: str = "resize",
    allow_class_change: bool = False,
    thresholds: Sequence[float] | None = None,
    onnx: bool = False,
    representative: np.ndarray | None = None,
    evaluation: Callable[[], Iterable] | None = None,
    max_accuracy_drop: float = 0.01,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Path:
    """Writes the next version of a SavedModel for TF Serving, verified before it appears.

    Args:
      model: a classifier from `classifier.build_classifier` (uint8 pixels in, probabilities out).
      class_names: names of the model's outputs, in order.
      image_size: the model's input size; serving inputs of any size are resized to it.
      model_root: <export.dir>/<name>; versions are created inside.
      top_k: how many names and scores each prediction returns (capped at the class count).
      check_images: real encoded images (validation ones) for the parity check and the
        TF Serving warm-up records; a few synthetic ones when empty.
      manifest: what to record about the model in assets.extra/sft_tf.json (backbone,
        weights, config digest, test metrics, ...); class names, sizes and versions are added.
      keep: keep only this many newest versions after publishing (0: keep all).
      tflite: "" for none, or "float16" / "dynamic_range" to add assets.extra/tflite/
        (model.tflite and labels.txt), checked against the model like the SavedModel.
      allow_class_change: publish even if the newest version has other class names (see
        `check_class_change`).
      thresholds: a multi-label model's per-label thresholds: adds the `predicted` output
        (None: a single-label model).
      onnx: add assets.extra/onnx/model.onnx, checked with onnxruntime.
      representative: uint8 pixels [N, S, S, 3] of training images (tflite="int8" only).
      evaluation: a function giving (uint8 pixels, labels) batches of the evaluation split:
        every variant is scored on them before publishing (None: no accuracy guard).
      max_accuracy_drop: the accuracy a variant may lose against the SavedModel.
      max_image_pixels: the bytes signatures refuse an image with more pixels than this
        (width x height, from its header) without decoding it: the run's data.max_image_pixels,
        so that serving refuses what training refused.

    Returns:
      The published version folder.

    Raises:
      UserError: the class names differ from the newest version's and allow_class_change is
        False (checked before anything is written).
      UserError: (also) a variant loses more than `max_accuracy_drop` (nothing is published).
      RuntimeError: the reloaded export disagrees with the model (nothing is published).
    """
    root = Path(model_root)
    check_class_change(root, class_names, allow_class_change)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(root)
    encoded = list(check_images) or _sample_images(image_size)
    # A hidden, non-integer name: TF Serving ignores it while it is being written.
    staging = root / f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    # What the signatures are traced with and the manifest records.
    serving = {
        "top_k": top_k,
        "resize_method": resize_method,
        "thresholds": thresholds,
        "max_image_pixels": max_image_pixels,
    }
    try:
        loaded, worst = _write_checked(staging, model, class_names, image_size, encoded, serving)
        measured = variants.write_variants(
            staging,
            model,
            class_names,
            image_size,
            encoded,
            tflite=tflite,
            onnx=onnx,
            resize_method=resize_method,
            thresholds=thresholds,
            representative=representative,
            evaluation=evaluation,
            max_accuracy_drop=max_accuracy_drop,
            loaded=loaded,
        )
        info = _manifest(manifest, class_names, image_size, tflite, worst, **serving)
        info.update(measured)
        (staging / MANIFEST_FILE).write_text(json.dumps(info, indent=2) + "\n")
        published = _publish(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prune_versions(root, keep)
    return published


def _write_checked(
    staging: Path, model, class_names, image_size: int, encoded, serving: dict
) -> tuple[object, float]:
    """Writes the SavedModel into `staging` and checks it reloaded against the model (the
    pixel limit's refusal included): (the loaded SavedModel, the max abs difference)."""
    say(f"Exporting to {staging.parent}: writing the SavedModel (tracing its serving signatures)")
    signatures.write_savedmodel(staging, model, class_names, image_size, encoded, **serving)
    say(f"  checking the reloaded SavedModel against the model on {len(encoded)} images")
    # Loaded once (3 s on ResNet50) for the parity check and the variants' scoring.
    loaded = tf.saved_model.load(str(staging))
    method, limit = serving["resize_method"], serving["max_image_pixels"]
    return loaded, verify_export(staging, model, image_size, encoded, method, loaded, limit)


def _publish(staging: Path, root: Path) -> Path:
    """Renames the verified staging folder to the next free version number."""
    while True:
        version = (versions(root) or [0])[-1] + 1
        try:
            # Atomic on one filesystem; fails if another exporter took this number first.
            staging.rename(root / str(version))
            return root / str(version)
        except OSError:
            if not (root / str(version)).exists():
                raise


def read_manifest(export_dir: str | Path) -> dict:
    """The manifest (assets.extra/sft_tf.json) of an export."""
    path = Path(export_dir) / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{path} not found; {export_dir} was not written by sft-tf")
    return json.loads(path.read_text())


def read_class_names(export_dir: str | Path) -> list[str]:
    """The class names stored in an export, in output order."""
    path = Path(export_dir) / LABELS_FILE
    if not path.is_file():
        raise UserError(f"{path} not found; {export_dir} was not written by sft-tf")
    return path.read_text().splitlines()
