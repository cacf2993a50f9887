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
class_ids [None, k] int32 and scores [None, k] float32.

Inside each version: assets/labels.txt (class names, a SavedModel asset), assets.extra/
sft_tf.json (the manifest: what was trained and how well) and assets.extra/
tf_serving_warmup_requests (PredictionLog records TF Serving replays before serving).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf import __version__, data
from sft_tf.errors import UserError

SIGNATURES = ("serving_default", "serving_images", "serving_tf_example")
# Max abs difference of probabilities between the reloaded export and the in-memory model.
PARITY_TOLERANCE = 1e-4
LABELS_FILE = "assets/labels.txt"
MANIFEST_FILE = "assets.extra/sft_tf.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
TFLITE_DIR = "assets.extra/tflite"
STAGING_PREFIX = ".staging-"
# Feature key of the encoded image in tf.train.Example records (TF Model Garden's layout).
IMAGE_KEY = "image/encoded"


def versions(model_root: str | Path) -> list[int]:
    """The integer version folders under a model root, ascending."""
    root = Path(model_root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def _serving_outputs(probabilities: tf.Tensor, class_names, top_k: int) -> dict:
    scores, ids = tf.math.top_k(probabilities, k=top_k)
    return {
        "probabilities": probabilities,
        "classes": class_names.lookup(tf.cast(ids, tf.int64)),
        "class_ids": tf.cast(ids, tf.int32),
        "scores": scores,
    }


def _build_archive(
    model: keras.Model,
    class_names: Sequence[str],
    image_size: int,
    top_k: int,
    labels_path: str,
    resize_method: str = "resize",
) -> keras.export.ExportArchive:
    # Line i of labels.txt names class i. The file becomes a SavedModel asset
    # (<version>/assets/labels.txt), so the served names and the file cannot disagree.
    names = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            labels_path,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    k = min(top_k, len(class_names))

    def from_pixels(images):
        return _serving_outputs(
            model(data.resize(images, image_size, resize_method), training=False), names, k
        )

    def from_bytes(image_bytes):
        # The same decode-and-resize as the training pipeline: no train/serve skew.
        images = tf.map_fn(
            lambda b: data.decode_image(b, image_size, resize_method),
            image_bytes,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
        )
        return _serving_outputs(model(images, training=False), names, k)

    def from_examples(examples):
        features = tf.io.parse_example(examples, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
        return from_bytes(features[IMAGE_KEY])

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(names)
    for name, fn, spec in (
        ("serving_default", from_bytes, tf.TensorSpec([None], tf.string, name="image_bytes")),
        ("serving_images", from_pixels, tf.TensorSpec([None, None, None, 3], tf.uint8, "images")),
        ("serving_tf_example", from_examples, tf.TensorSpec([None], tf.string, name="examples")),
    ):
        archive.add_endpoint(name, fn, input_signature=[spec])
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


def image_example(encoded: bytes) -> bytes:
    """A serialized tf.train.Example holding one encoded image under `image/encoded`."""
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
    example = tf.train.Example(features=tf.train.Features(feature={IMAGE_KEY: feature}))
    return example.SerializeToString()


def verify_export(
    path: str | Path,
    model: keras.Model,
    image_size: int,
    encoded: Sequence[bytes],
    resize_method: str = "resize",
) -> float:
    """Reloads an export and checks every signature against the in-memory model.

    The same images go in as encoded bytes, as tf.train.Examples and as pixels (at their own
    size, so the in-graph resize is checked too).

    Returns:
      The max abs difference of probabilities.

    Raises:
      RuntimeError: a signature is missing or disagrees beyond PARITY_TOLERANCE or on top-1.
    """
    loaded = tf.saved_model.load(str(path))
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise RuntimeError(f"export {path} lacks signatures {missing}")
    pixels = np.stack(
        [data.decode_image(tf.constant(b), image_size, resize_method).numpy() for b in encoded]
    )
    expected = model.predict(pixels, verbose=0)
    sig = loaded.signatures
    # Pixels go in one image at a time at their own size, so the in-graph resize is checked.
    raw = [tf.io.decode_image(b, channels=3, expand_animations=False)[None] for b in encoded]
    got = {
        "serving_default": sig["serving_default"](image_bytes=tf.constant(list(encoded))),
        "serving_tf_example": sig["serving_tf_example"](
            examples=tf.constant([image_example(b) for b in encoded])
        ),
        "serving_images": {
            key: tf.concat([sig["serving_images"](images=x)[key] for x in raw], axis=0)
            for key in ("probabilities", "class_ids")
        },
    }
    worst = 0.0
    for name, out in got.items():
        probabilities, ids = out["probabilities"].numpy(), out["class_ids"].numpy()[:, 0]
        diff = float(np.max(np.abs(probabilities - expected)))
        worst = max(worst, diff)
        same_top1 = np.array_equal(ids, expected.argmax(-1))
        if diff > PARITY_TOLERANCE or not same_top1:
            raise RuntimeError(
                f"export {path}: {name} differs from the trained model (max |dp| = {diff:.2e}, "
                f"same top-1: {same_top1}); not published"
            )
    return worst


def _warmup_records(encoded: Sequence[bytes], count: int = 3) -> list[bytes]:
    """PredictionLog records for TF Serving's warm-up: serving_default on real images."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    records = []
    for b in list(encoded)[:count]:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(signature_name="serving_default")
        )
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b], dtype=tf.string))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )
        records.append(log.SerializeToString())
    return records


def write_tflite(
    model: keras.Model,
    folder: Path,
    class_names: Sequence[str],
    image_size: int,
    encoded: Sequence[bytes],
    quantization: str = "float16",
    resize_method: str = "resize",
) -> Path:
    """Converts the classifier to TFLite (uint8 [1, S, S, 3] in, probabilities out).

    Writes <folder>/model.tflite and <folder>/labels.txt, then runs the TFLite interpreter on
    `encoded` (decoded and resized as in training) and checks top-1 against the Keras model.

    Args:
      quantization: "float16" (half-size weights, float math) or "dynamic_range" (int8
        weights, quarter size; small accuracy cost).

    Raises:
      RuntimeError: the TFLite model disagrees with the Keras model on a top-1 class.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.tflite"
    path.write_bytes(converter.convert())
    (folder / "labels.txt").write_text("\n".join(class_names) + "\n")

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice; it still works
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    pixels = np.stack(
        [data.decode_image(tf.constant(b), image_size, resize_method).numpy() for b in encoded]
    )
    expected = model.predict(pixels, verbose=0).argmax(-1)
    for image, want in zip(pixels, expected):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        got = int(interpreter.get_tensor(out["index"])[0].argmax())
        if got != want:
            raise RuntimeError(
                f"TFLite ({quantization}) predicts {class_names[got]!r} where the model predicts "
                f"{class_names[want]!r}; not published (try export.tflite_quantization=float16)"
            )
    return path


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
    found = versions(root)
    if allow or not found:
        return
    labels = root / str(found[-1]) / LABELS_FILE
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
    """Deletes all but the newest `keep` versions (keep <= 0 keeps all); returns the deleted."""
    found = versions(model_root)
    doomed = found[:-keep] if keep > 0 else []
    for version in doomed:
        shutil.rmtree(Path(model_root) / str(version))
    return doomed


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
) -> Path:
    """Writes the next version of a SavedModel for TF Serving, verified before it appears.

    Args:
      model: a classifier from `model.build_classifier` (uint8 pixels in, probabilities out).
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

    Returns:
      The published version folder.

    Raises:
      UserError: the class names differ from the newest version's and allow_class_change is
        False (checked before anything is written).
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
    try:
        with tempfile.TemporaryDirectory() as tmp:
            labels = Path(tmp) / "labels.txt"
            labels.write_text("\n".join(class_names) + "\n")
            archive = _build_archive(
                model, class_names, image_size, top_k, str(labels), resize_method
            )
            archive.write_out(str(staging), verbose=False)
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(staging / WARMUP_FILE)) as writer:
            for record in _warmup_records(encoded):
                writer.write(record)
        worst = verify_export(staging, model, image_size, encoded, resize_method)
        if tflite:
            write_tflite(
                model, staging / TFLITE_DIR, class_names, image_size, encoded, tflite, resize_method
            )
        info = {
            **(manifest or {}),
            "class_names": list(class_names),
            "image_size": image_size,
            "resize_method": resize_method,
            "input_dtype": "uint8 pixels 0..255; preprocessing is inside the model",
            "signatures": list(SIGNATURES),
            "top_k": min(top_k, len(class_names)),
            "tflite": f"{TFLITE_DIR}/model.tflite ({tflite})" if tflite else None,
            "parity_max_abs_diff": worst,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": {
                "sft_tf": __version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(info, indent=2) + "\n")
        while True:
            version = (versions(root) or [0])[-1] + 1
            try:
                # Atomic on one filesystem; fails if another exporter took this number first.
                staging.rename(root / str(version))
                break
            except OSError:
                if not (root / str(version)).exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prune_versions(root, keep)
    return root / str(version)


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
      no files is one result with an error.

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
        results.append(
            {
                "file": path,
                "classes": [c.decode() for c in out["classes"].numpy()[0]],
                "scores": [round(float(s), 4) for s in out["scores"].numpy()[0]],
            }
        )
    return results
