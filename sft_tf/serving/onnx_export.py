"""The ONNX variant of an export: Keras 3's own ONNX export, run with onnxruntime.

Keras writes the model (uint8 pixels [None, S, S, 3] in, probabilities out, preprocessing
inside) through tf2onnx for the TensorFlow backend. Decoding and resizing stay outside the ONNX
graph, as for TFLite. The packages are an optional extra: pip install 'sft_tf[onnx]'.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import keras
import numpy as np

from sft_tf.errors import UserError
from sft_tf.evaluation import inference

ONNX_PACKAGES = {"onnxruntime": "onnxruntime", "tf2onnx": "tf2onnx", "onnx": "onnx"}


def check_installed(field: str) -> None:
    """Raises UserError naming the missing packages and the install command."""
    missing = [pip for module, pip in ONNX_PACKAGES.items() if not importlib.util.find_spec(module)]
    if missing:
        raise UserError(
            f"{field} needs {', '.join(missing)}: pip install 'sft_tf[onnx]' (or set it to false)"
        )


def write_onnx(model: keras.Model, folder: Path) -> Path:
    """Writes <folder>/model.onnx; returns its path."""
    check_installed("config.export.onnx=true")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    # Keras exports only a model that has been called once: one black image does it.
    size = model.input_shape[1]
    model.predict(np.zeros((1, size, size, 3), np.uint8), verbose=0)
    with warnings.catch_warnings():  # tf2onnx's own deprecation notices
        warnings.simplefilter("ignore")
        model.export(str(path), format="onnx", verbose=False)
    return path


def onnx_session(path: str | Path):
    """An onnxruntime session on the CPU (what `onnx_predict` and the benchmark run)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(session, model: keras.Model, pixels: np.ndarray, class_names) -> float:
    """Runs the ONNX model on `pixels` next to the Keras model: the max |dp|.

    Raises:
      RuntimeError: a top-1 class differs (nothing is published).
    """
    expected = inference.outputs(model, pixels)[0]
    got = onnx_predict(session, pixels)
    for want, have in zip(expected.argmax(-1), got.argmax(-1)):
        if want != have:
            raise RuntimeError(
                f"ONNX predicts {class_names[have]!r} where the model predicts "
                f"{class_names[want]!r}; not published"
            )
    return float(np.max(np.abs(got - expected))) if len(got) else 0.0


def onnx_predict(session, pixels: np.ndarray, batch: int = 64) -> np.ndarray:
    """Probabilities of the ONNX model for uint8 pixels [N, S, S, 3], `batch` at a time."""
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: pixels[i : i + batch]})[0] for i in range(0, len(pixels), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
