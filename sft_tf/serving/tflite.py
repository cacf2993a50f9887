"""TFLite variants of an export (float16, dynamic-range, full-integer int8), checked against the
model, and a batch runner for them.

Every variant takes uint8 pixels [N, S, S, 3] (decoding and resizing stay outside TFLite, as in
the SavedModel's serving_images) and returns float32 probabilities. int8 is full-integer
post-training quantization: int8 weights and activations, the activation ranges calibrated on
representative training images; the input stays the pixels' uint8 and the output is
dequantized to float32 probabilities.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sft_tf.data import decode
from sft_tf.evaluation import inference

TFLITE_QUANTIZATIONS = ("float16", "dynamic_range", "int8")


def _converter(model: keras.Model, quantization: str, representative: np.ndarray | None):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative is None or not len(representative):
            raise ValueError("int8 quantization needs representative images")

        def calibration_images():
            for image in representative:
                yield [image[None]]

        converter.representative_dataset = calibration_images
        # Integer kernels only: conversion fails rather than leaving float ops in the graph.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    return converter


def interpreter(path: str | Path) -> tf.lite.Interpreter:
    """A TFLite interpreter for `path`, tensors allocated."""
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice; it still works
        warnings.simplefilter("ignore")
        runner = tf.lite.Interpreter(model_path=str(path))
    runner.allocate_tensors()
    return runner


def tflite_predict(runner: tf.lite.Interpreter, pixels: np.ndarray) -> np.ndarray:
    """Probabilities for uint8 pixels [N, S, S, 3], one image per call (the converted batch
    dimension is 1)."""
    (inp,), (out,) = runner.get_input_details(), runner.get_output_details()
    results = []
    for image in pixels:
        runner.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        runner.invoke()
        results.append(runner.get_tensor(out["index"])[0].astype(np.float32))
    return np.stack(results) if results else np.zeros((0, 0), np.float32)


def write_tflite(
    model: keras.Model,
    folder: Path,
    class_names: Sequence[str],
    image_size: int,
    encoded: Sequence[bytes],
    quantization: str = "float16",
    resize_method: str = "resize",
    representative: np.ndarray | None = None,
) -> Path:
    """Converts the classifier to TFLite (uint8 [1, S, S, 3] in, probabilities out).

    Writes <folder>/model.tflite and <folder>/labels.txt, then runs the TFLite interpreter on
    `encoded` (decoded and resized as in training) and checks top-1 against the Keras model.
    An int8 model may flip a near-tie on a few images; its check is the accuracy guard on the
    whole evaluation split (`variants.check_accuracy`), not these few images.

    Args:
      quantization: "float16" (half-size weights, float math), "dynamic_range" (int8
        weights, quarter size) or "int8" (int8 weights and activations).
      representative: int8 only: uint8 pixels [N, S, S, 3] that calibrate activation ranges.

    Raises:
      RuntimeError: the TFLite model disagrees with the Keras model on a top-1 class.
    """
    # The converter prints the intermediate SavedModel's signatures and warns about its own
    # internals: none of it is the user's to act on.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = _converter(model, quantization, representative).convert()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.tflite"
    path.write_bytes(converted)
    (folder / "labels.txt").write_text("\n".join(class_names) + "\n")
    if quantization == "int8":
        return path
    pixels = decode.decode_images(encoded, image_size, resize_method)
    expected = inference.outputs(model, pixels)[0].argmax(-1)
    got = tflite_predict(interpreter(path), pixels).argmax(-1)
    for want, have in zip(expected, got):
        if have != want:
            raise RuntimeError(
                f"TFLite ({quantization}) predicts {class_names[have]!r} where the model predicts "
                f"{class_names[want]!r}; not published (try export.tflite_quantization=float16)"
            )
    return path
