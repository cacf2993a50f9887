"""What each deployment variant of an export costs: accuracy, size and latency, measured here.

The variants are the SavedModel itself and the files beside it (assets.extra/tflite/model.tflite,
assets.extra/onnx/model.onnx). Before a version is published every variant is scored on the
evaluation split (`check_accuracy`); one that loses more than `export.max_accuracy_drop` of the
SavedModel's accuracy stops the export. Latency is the wall time of one call at batch 1 (median
and 95th percentile over repeated calls after warm-up); the SavedModel's throughput is measured
at batch 32. `sft-tf benchmark` measures an existing export again (`find_variants`, `measure`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from sft_tf.data import decode
from sft_tf.errors import UserError
from sft_tf.log import say
from sft_tf.serving import onnx_export
from sft_tf.serving import tflite as tflite_lib
from sft_tf.serving.layout import ONNX_DIR, TFLITE_DIR

WARMUP_CALLS = 5
TIMED_CALLS = 50
THROUGHPUT_BATCH = 32
# Batch 32 of a large model takes a second or more on a CPU: fewer calls measure it well enough.
THROUGHPUT_CALLS = 10


@dataclasses.dataclass
class Variant:
    """One way to serve the model: its name, file, and a function from uint8 pixels
    [N, S, S, 3] to probabilities [N, C]."""

    name: str
    file: str
    predict: Callable[[np.ndarray], np.ndarray]


def find_variants(
    export_dir: str | Path, tflite_quantization: str = "", loaded=None
) -> list[Variant]:
    """The SavedModel and whichever TFLite / ONNX files the export (or staging folder) holds
    (`loaded`: the SavedModel already loaded, else it is loaded here)."""
    export_dir = Path(export_dir)
    serve = (loaded or tf.saved_model.load(str(export_dir))).signatures["serving_images"]
    found = [
        Variant(
            "SavedModel",
            "saved_model.pb",
            lambda pixels: serve(images=tf.constant(pixels))["probabilities"].numpy(),
        )
    ]
    lite = export_dir / TFLITE_DIR / "model.tflite"
    if lite.is_file():
        runner = tflite_lib.interpreter(lite)
        label = f"TFLite {tflite_quantization}".strip()
        found.append(
            Variant(
                label,
                str(lite.relative_to(export_dir)),
                lambda p: tflite_lib.tflite_predict(runner, p),
            )
        )
    onnx = export_dir / ONNX_DIR / "model.onnx"
    if onnx.is_file():
        session = onnx_export.onnx_session(onnx)
        found.append(
            Variant(
                "ONNX",
                str(onnx.relative_to(export_dir)),
                lambda p: onnx_export.onnx_predict(session, p),
            )
        )
    return found


def _agreement(probabilities: np.ndarray, labels: np.ndarray, thresholds) -> np.ndarray:
    """Per example: top-1 right (single-label), or the share of label decisions right at the
    thresholds (multi-label)."""
    if np.ndim(labels) == 2:
        return ((probabilities >= thresholds) == (labels > 0)).mean(-1)
    return (probabilities.argmax(-1) == labels).astype(np.float64)


def check_accuracy(
    variants: list[Variant],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    max_drop: float,
    thresholds=None,
) -> dict[str, float]:
    """Scores every variant on the same evaluation batches; stops on a quantized variant that
    loses more than `max_drop` of the SavedModel's accuracy (its first entry).

    Returns:
      Variant name -> accuracy (top-1; multi-label: label decisions right at the thresholds).

    Raises:
      UserError: naming the variant, both accuracies and the fix.
    """
    right = {v.name: [] for v in variants}
    for pixels, labels in batches:
        for v in variants:
            right[v.name].append(_agreement(v.predict(pixels), labels, thresholds))
    accuracy = {name: float(np.mean(np.concatenate(r))) if r else 0.0 for name, r in right.items()}
    reference = accuracy[variants[0].name]
    for v in variants[1:]:
        if reference - accuracy[v.name] > max_drop:
            raise UserError(
                f"{v.name} ({v.file}) scores {accuracy[v.name]:.4f} against the SavedModel's "
                f"{reference:.4f}, losing more than config.export.max_accuracy_drop={max_drop}; "
                "not published. Use export.tflite_quantization=float16 (or dynamic_range), or "
                "allow a larger drop"
            )
    return {name: round(value, 4) for name, value in accuracy.items()}


def _latency_ms(predict: Callable, image: np.ndarray, calls: int = TIMED_CALLS):
    """(median, 95th percentile) wall time in ms of `calls` calls, after warm-up calls."""
    for _ in range(min(WARMUP_CALLS, calls)):
        predict(image)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predict(image)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def measure(
    variants: list[Variant], export_dir: str | Path, image_size: int, accuracy: dict | None = None
) -> list[dict]:
    """One row per variant: file, bytes, accuracy (if known), batch-1 latency (median, p95 ms);
    the SavedModel's also has its batch-32 throughput (images/s)."""
    rng = np.random.default_rng(0)  # latency does not depend on what the pixels show
    image = rng.integers(0, 256, (1, image_size, image_size, 3), dtype=np.uint8)
    rows = []
    for v in variants:
        median, p95 = _latency_ms(v.predict, image)
        path = Path(export_dir) / v.file
        row = {
            "variant": v.name,
            "file": v.file,
            "bytes": _size(path if v.file != "saved_model.pb" else Path(export_dir)),
            "accuracy": (accuracy or {}).get(v.name),
            "latency_ms_median": round(median, 3),
            "latency_ms_p95": round(p95, 3),
        }
        if v is variants[0]:
            batch = np.repeat(image, THROUGHPUT_BATCH, axis=0)
            seconds = _latency_ms(v.predict, batch, THROUGHPUT_CALLS)[0] / 1000
            row["images_per_second_batch32"] = round(THROUGHPUT_BATCH / seconds, 1)
        rows.append(row)
    return rows


def _size(path: Path) -> int:
    """A file's bytes, or a SavedModel's (saved_model.pb and variables/, no assets.extra)."""
    if path.is_file():
        return path.stat().st_size
    parts = [path / "saved_model.pb", *(path / "variables").glob("*")]
    return sum(p.stat().st_size for p in parts if p.is_file())


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table (what the report shows and `sft-tf benchmark` prints)."""
    lines = [
        "| variant | file | size (MB) | accuracy | batch 1 median (ms) | p95 (ms) "
        "| batch 32 (img/s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        accuracy = "n/a" if r.get("accuracy") is None else f"{r['accuracy']:.4f}"
        speed = r.get("images_per_second_batch32")
        lines.append(
            f"| {r['variant']} | {r['file']} | {r['bytes'] / 2**20:.2f} | {accuracy} | "
            f"{r['latency_ms_median']:.2f} | {r['latency_ms_p95']:.2f} | "
            f"{'' if speed is None else f'{speed:.0f}'} |"
        )
    return "\n".join(lines)


def write_variants(
    staging: Path,
    model,
    class_names,
    image_size: int,
    encoded,
    *,
    tflite: str = "",
    onnx: bool = False,
    resize_method: str = "resize",
    thresholds=None,
    representative: np.ndarray | None = None,
    evaluation: Callable[[], Iterable] | None = None,
    max_accuracy_drop: float = 0.01,
    loaded=None,
) -> dict:
    """The TFLite and ONNX files beside the SavedModel in `staging`, each checked against the
    model, then every variant scored (the accuracy guard) and timed. The arguments mean what
    they mean for `export.export_for_serving`; `loaded`: the staged SavedModel, loaded.

    Returns:
      The manifest's entries: variants (`measure` rows) and the ONNX parity.
    """
    if tflite:
        say(f"  converting to TFLite ({tflite}) and checking it")
        path = staging / TFLITE_DIR
        tflite_lib.write_tflite(
            model, path, class_names, image_size, encoded, tflite, resize_method, representative
        )
    info = {}
    if onnx:
        say("  converting to ONNX and checking it with onnxruntime")
        path = onnx_export.write_onnx(model, staging / ONNX_DIR)
        pixels = decode.decode_images(encoded, image_size, resize_method)
        session = onnx_export.onnx_session(path)
        info["onnx_parity_max_abs_diff"] = onnx_export.check_onnx(
            session, model, pixels, class_names
        )
    found = find_variants(staging, tflite, loaded)
    accuracy = None
    if evaluation is not None:
        names = ", ".join(v.name for v in found)
        say(f"  scoring {names} on the evaluation split (the accuracy guard)")
        accuracy = check_accuracy(found, evaluation(), max_accuracy_drop, thresholds)
    say("  measuring sizes and batch-1 latency")
    info["variants"] = measure(found, staging, image_size, accuracy)
    return info
