"""SavedModel export in TF Serving's versioned layout, and prediction from such an export.

Layout: <root>/<name>/<version>/ with an integer version above every existing one. The model is
written to a hidden sibling folder (TF Serving only loads integer-named folders), reloaded and
compared with the in-memory model, and only then renamed into place, so TF Serving never sees
a half-written or wrong version.

Signatures (dynamic batch dimension):
  serving_default   image_bytes: string [None]    encoded JPEG/PNG/GIF/BMP of any size
  serving_images    images: uint8 [None, None, None, 3]  pixels of any size
each returning probabilities [None, C] float32, classes [None, k] string (top-k class names),
class_ids [None, k] int32 and scores [None, k] float32.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf import data
from sft_tf.errors import UserError

SIGNATURES = ("serving_default", "serving_images")
# Max abs difference of probabilities between the reloaded export and the in-memory model.
PARITY_TOLERANCE = 1e-4
LABELS_FILE = "assets.extra/labels.txt"


def versions(model_root: str | Path) -> list[int]:
    """The integer version folders under a model root, ascending."""
    root = Path(model_root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def _serving_outputs(probabilities: tf.Tensor, class_names: tf.Tensor, top_k: int) -> dict:
    scores, ids = tf.math.top_k(probabilities, k=top_k)
    return {
        "probabilities": probabilities,
        "classes": tf.gather(class_names, ids),
        "class_ids": tf.cast(ids, tf.int32),
        "scores": scores,
    }


def _build_archive(
    model: keras.Model, class_names: Sequence[str], image_size: int, top_k: int
) -> keras.export.ExportArchive:
    names = tf.constant(list(class_names))
    k = min(top_k, len(class_names))

    def from_pixels(images):
        return _serving_outputs(model(data.resize(images, image_size), training=False), names, k)

    def from_bytes(image_bytes):
        images = tf.map_fn(
            lambda b: data.decode_image(b, image_size),
            image_bytes,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
        )
        return _serving_outputs(model(images, training=False), names, k)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        from_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    archive.add_endpoint(
        "serving_images",
        from_pixels,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    return archive


def _sample_images(image_size: int, count: int = 4, seed: int = 0) -> list[bytes]:
    """A few encoded images of assorted sizes to check the export with when none are given."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = image_size + 7 * i, image_size + 3 * i
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append(tf.io.encode_png(pixels).numpy())
    return out


def verify_export(
    path: str | Path, model: keras.Model, image_size: int, encoded: Sequence[bytes]
) -> float:
    """Reloads an export and checks both signatures against the in-memory model.

    Returns:
      The max abs difference of probabilities.

    Raises:
      RuntimeError: a signature is missing or disagrees beyond PARITY_TOLERANCE.
    """
    loaded = tf.saved_model.load(str(path))
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise RuntimeError(f"export {path} lacks signatures {missing}")
    pixels = np.stack([data.decode_image(tf.constant(b), image_size).numpy() for b in encoded])
    expected = model.predict(pixels, verbose=0)
    got_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(list(encoded)))
    got_pixels = loaded.signatures["serving_images"](images=tf.constant(pixels))
    worst = 0.0
    for name, got in (("serving_default", got_bytes), ("serving_images", got_pixels)):
        diff = float(np.max(np.abs(got["probabilities"].numpy() - expected)))
        worst = max(worst, diff)
        same_top1 = np.array_equal(got["class_ids"].numpy()[:, 0], expected.argmax(-1))
        if diff > PARITY_TOLERANCE or not same_top1:
            raise RuntimeError(
                f"export {path}: {name} differs from the trained model (max |dp| = {diff:.2e}, "
                f"same top-1: {same_top1}); not published"
            )
    return worst


def export_for_serving(
    model: keras.Model,
    class_names: Sequence[str],
    image_size: int,
    model_root: str | Path,
    top_k: int = 5,
    check_images: Sequence[bytes] = (),
) -> Path:
    """Writes the next version of a SavedModel for TF Serving, verified before it appears.

    Args:
      model: a classifier from `model.build_classifier` (uint8 pixels in, probabilities out).
      class_names: names of the model's outputs, in order.
      image_size: the model's input size; serving inputs of any size are resized to it.
      model_root: <export.dir>/<name>; versions are created inside.
      top_k: how many names and scores each prediction returns.
      check_images: encoded images to compare the export and the model on (a few synthetic
        ones when empty).

    Returns:
      The published version folder.

    Raises:
      RuntimeError: the reloaded export disagrees with the model (nothing is published).
    """
    root = Path(model_root)
    root.mkdir(parents=True, exist_ok=True)
    archive = _build_archive(model, class_names, image_size, top_k)
    # A hidden, non-integer name: TF Serving ignores it while it is being written.
    staging = root / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        archive.write_out(str(staging), verbose=False)
        # The class names beside the graph too, for tools that read files, not signatures.
        (staging / "assets.extra").mkdir(exist_ok=True)
        (staging / LABELS_FILE).write_text("\n".join(class_names) + "\n")
        verify_export(staging, model, image_size, list(check_images) or _sample_images(image_size))
        while True:
            version = (versions(root) or [0])[-1] + 1
            try:
                # Atomic on one filesystem; fails if another exporter took this number first.
                staging.rename(root / str(version))
                return root / str(version)
            except OSError:
                if not (root / str(version)).exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_class_names(export_dir: str | Path) -> list[str]:
    """The class names stored in an export, in output order."""
    path = Path(export_dir) / LABELS_FILE
    if not path.is_file():
        raise UserError(f"{path} not found; {export_dir} was not written by sft-tf export")
    return path.read_text().splitlines()


def resolve_export(model_root: str | Path, version: int | None = None) -> Path:
    """The folder of `version` (default: the highest) under an export root.

    Also accepts a version folder itself.

    Raises:
      UserError: no such export.
    """
    root = Path(model_root)
    if (root / "saved_model.pb").is_file():
        return root
    found = versions(root)
    if not found:
        raise UserError(f"--model={root}: no integer version folders with a SavedModel inside")
    if version is None:
        return root / str(found[-1])
    if version not in found:
        raise UserError(f"--version={version} not in {root} (versions: {found})")
    return root / str(version)


def predict_files(export_dir: str | Path, paths: Sequence[str]) -> list[dict]:
    """Runs the export's serving_default signature on image files, one result per file.

    Only TensorFlow and the SavedModel are used, as a serving client would.

    Returns:
      Dicts with "file" and either "classes" and "scores" (top-k) or "error".
    """
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    results = []
    for path in paths:
        try:
            encoded = tf.io.gfile.GFile(path, "rb").read()
            out = serve(image_bytes=tf.constant([encoded]))
        except (tf.errors.OpError, OSError) as e:
            message = getattr(e, "message", None) or str(e)
            results.append({"file": path, "error": message.strip().splitlines()[0]})
            continue
        results.append(
            {
                "file": path,
                "classes": [c.decode() for c in out["classes"].numpy()[0]],
                "scores": [round(float(s), 4) for s in out["scores"].numpy()[0]],
            }
        )
    return results
