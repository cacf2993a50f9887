"""Deployment variants: full-integer TFLite, ONNX, the accuracy guard, latency in the manifest,
and `sft-tf benchmark`, on a real tiny model and real image files."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.data import decode
from sft_tf.errors import UserError
from sft_tf.serving import export, layout
from tests.helpers import sft_tf, tiny_classifier

CLASSES = ["cat", "dog", "fox"]

ONNX_CLIENT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import onnxruntime
    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    pixels = np.load(sys.argv[2])
    inp = session.get_inputs()[0]
    out = session.run(None, {inp.name: pixels})[0]
    print(inp.type, out.shape[1], " ".join(map(str, out.argmax(-1))))
    """
)


def _pixels(images, size=32):
    return np.stack(
        [decode.decode_image(tf.constant(p.read_bytes()), size).numpy() for p in images]
    )


def _batches(pixels, labels):
    return lambda: [(pixels, labels)]


def _with_head_scale(scale: float, seed: int = 0):
    """The tiny classifier with its head's kernel scaled: large scales make decisive
    predictions (as a trained head does), tiny ones near-ties."""
    model = tiny_classifier(3, seed=seed)
    head = model.get_layer("probabilities")
    kernel, bias = head.get_weights()
    rng = np.random.default_rng(seed)
    head.set_weights([(rng.normal(0, 1, kernel.shape) * scale).astype(np.float32), bias])
    return model


@pytest.fixture(scope="module")
def tiny_model():
    return _with_head_scale(0.1)


@pytest.fixture(scope="module")
def variants_export(tmp_path_factory, tiny_model, images):
    """One export with int8 TFLite and ONNX, scored on the images labelled by the model."""
    pixels = _pixels(images)
    labels = tiny_model.predict(pixels, verbose=0).argmax(-1)
    rng = np.random.default_rng(0)
    representative = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    representative[: len(pixels)] = pixels
    root = tmp_path_factory.mktemp("variants") / "tiny"
    path = export.export_for_serving(
        tiny_model,
        CLASSES,
        32,
        root,
        check_images=[p.read_bytes() for p in images],
        tflite="int8",
        onnx=True,
        representative=representative,
        evaluation=_batches(pixels, labels),
    )
    return path, pixels


@pytest.mark.slow  # the shared int8 + ONNX export: ~30 s
def test_int8_tflite_is_integer_and_agrees_with_the_saved_model(variants_export, tiny_model):
    path, pixels = variants_export
    interpreter = tf.lite.Interpreter(model_path=str(path / layout.TFLITE_DIR / "model.tflite"))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 32, 32, 3]
    assert out["dtype"] == np.float32
    kinds = [t["dtype"] for t in interpreter.get_tensor_details()]
    assert kinds.count(np.int8) > 50  # weights and activations
    expected = tiny_model.predict(pixels, verbose=0)
    got = []
    for image in pixels:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        got.append(interpreter.get_tensor(out["index"])[0])
    got = np.asarray(got)
    # An untrained network quantizes worse than a trained one (docs/benchmarks.md: the demo
    # model loses nothing); still, int8 keeps the decisions and stays close on average.
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 6 / 7
    assert np.abs(got - expected).mean() < 0.1


@pytest.mark.slow  # the shared int8 + ONNX export: ~30 s
def test_onnx_runs_without_sft_tf_and_agrees(variants_export, tiny_model, tmp_path):
    path, pixels = variants_export
    np.save(tmp_path / "pixels.npy", pixels)
    onnx_file = path / layout.ONNX_DIR / "model.onnx"
    result = subprocess.run(
        [sys.executable, "-c", ONNX_CLIENT, str(onnx_file), str(tmp_path / "pixels.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    dtype, classes, top1 = result.stdout.split(maxsplit=2)
    assert dtype == "tensor(uint8)" and int(classes) == 3
    expected = tiny_model.predict(pixels, verbose=0).argmax(-1)
    assert list(map(int, top1.split())) == expected.tolist()
    manifest = export.read_manifest(path)
    assert manifest["onnx_parity_max_abs_diff"] < 1e-4


@pytest.mark.slow  # the shared int8 + ONNX export: ~30 s
def test_manifest_lists_every_variant_with_size_accuracy_and_latency(variants_export, tmp_path):
    path, _ = variants_export
    rows = {r["variant"]: r for r in export.read_manifest(path)["variants"]}
    assert list(rows) == ["SavedModel", "TFLite int8", "ONNX"]
    assert rows["SavedModel"]["accuracy"] == 1.0  # scored on its own predictions
    for row in rows.values():
        assert row["bytes"] > 10_000 and 0 <= row["accuracy"] <= 1
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p95"]
    assert rows["TFLite int8"]["bytes"] < rows["ONNX"]["bytes"] / 2
    assert rows["SavedModel"]["images_per_second_batch32"] > 0
    printed = sft_tf("benchmark", f"--model={path.parent}", cwd=tmp_path).stdout
    assert "| TFLite int8 | assets.extra/tflite/model.tflite |" in printed
    assert "| ONNX | assets.extra/onnx/model.onnx |" in printed


@pytest.mark.slow  # two exports and an int8 conversion: ~30 s
def test_accuracy_guard_stops_a_variant_that_loses_accuracy(tmp_path, images):
    # A head whose classes differ by ~1e-4 in probability: int8 rounds them to ties (top-1
    # becomes class 0), while the float model's own top-1 is the label.
    model = _with_head_scale(1e-4)
    pixels = _pixels(images)
    labels = model.predict(pixels, verbose=0).argmax(-1)
    assert (labels != 0).any()
    root = tmp_path / "tiny"
    first = export.export_for_serving(model, CLASSES, 32, root, check_images=[])
    before = sorted(p.name for p in first.rglob("*"))
    with pytest.raises(
        UserError, match=r"TFLite int8 .* scores .* against the SavedModel's 1\.0000"
    ):
        export.export_for_serving(
            model,
            CLASSES,
            32,
            root,
            check_images=[],
            tflite="int8",
            representative=pixels,
            evaluation=_batches(pixels, labels),
            max_accuracy_drop=0.01,
        )
    assert export.versions(root) == [1] and sorted(p.name for p in first.rglob("*")) == before
    assert not list(root.glob(f"{layout.STAGING_PREFIX}*"))
