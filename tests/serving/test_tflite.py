"""TFLite variants: written beside the SavedModel, same top-1 as the model."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data import decode
from sft_tf.serving import export, layout

CLASSES = ["cat", "dog", "fox"]


@pytest.mark.slow  # a conversion and its check: ~25 s each
@pytest.mark.parametrize("quantization", ["float16", "dynamic_range"])
def test_tflite_matches_the_saved_model_top1(tmp_path, tiny_model, images, quantization):
    encoded = [p.read_bytes() for p in images]
    path = export.export_for_serving(
        tiny_model, CLASSES, 32, tmp_path / "tiny", check_images=encoded, tflite=quantization
    )
    folder = path / layout.TFLITE_DIR
    assert (folder / "labels.txt").read_text().split() == CLASSES
    assert export.read_manifest(path)["tflite"].endswith(f"({quantization})")
    interpreter = tf.lite.Interpreter(model_path=str(folder / "model.tflite"))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 32, 32, 3]
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    served = serve(image_bytes=tf.constant(encoded))["class_ids"].numpy()[:, 0]
    for b, want in zip(encoded, served):
        interpreter.set_tensor(inp["index"], decode.decode_image(tf.constant(b), 32).numpy()[None])
        interpreter.invoke()
        assert interpreter.get_tensor(out["index"])[0].argmax() == want
