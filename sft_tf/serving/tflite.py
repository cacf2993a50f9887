"""TFLite variants of an export (float16, dynamic-range), checked against the model."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf.data import decode


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
        [decode.decode_image(tf.constant(b), image_size, resize_method).numpy() for b in encoded]
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
