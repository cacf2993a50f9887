"""Export layout, signatures, parity, and a reload in a fresh TensorFlow-only process."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sft_tf.data import decode
from sft_tf.errors import UserError
from sft_tf.serving import export, layout, parity
from sft_tf.serving import predict as predict_lib
from tests.helpers import exif_jpeg, pil_bytes

CLASSES = ["cat", "dog", "fox"]


@pytest.mark.slow
def test_versions_are_published_atomically_and_increase(tmp_path, tiny_model, images, capsys):
    root = tmp_path / "saved_models" / "tiny"
    (root / "7").mkdir(parents=True)  # an existing version from an earlier run is kept
    (root / "7" / "saved_model.pb").write_bytes(b"old")
    check = [p.read_bytes() for p in images]
    (root / "3").mkdir()
    first = export.export_for_serving(tiny_model, CLASSES, 32, root, top_k=2, check_images=check)
    assert first.name == "8"
    assert sorted(p.name for p in root.iterdir()) == ["3", "7", "8"]  # no staging folder left
    assert (root / "7" / "saved_model.pb").read_bytes() == b"old"
    # keep=2 prunes every older version once the new one is in place.
    capsys.readouterr()
    second = export.export_for_serving(tiny_model, CLASSES, 32, root, top_k=2, keep=2)
    assert second.name == "9" and export.versions(root) == [8, 9]
    assert f"Removed version(s) 3, 7 of {root} (export.keep=2)" in capsys.readouterr().out


@pytest.mark.slow
def test_failed_export_publishes_nothing(tmp_path, tiny_model):
    root = tmp_path / "tiny"
    with pytest.raises(tf.errors.InvalidArgumentError):
        export.export_for_serving(tiny_model, CLASSES, 32, root, check_images=[b"not an image"])
    assert list(root.iterdir()) == []


_FRESH_PROCESS = textwrap.dedent(
    """
    import base64, json, sys
    import tensorflow as tf
    export_dir, files = sys.argv[1], sys.argv[2:]
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    # A TF Serving REST body, decoded the way the server decodes {"b64": ...}.
    body = json.dumps({"instances": [{"b64": base64.b64encode(open(f, "rb").read()).decode()}
                                     for f in files]})
    instances = [base64.b64decode(i["b64"]) for i in json.loads(body)["instances"]]
    out = {}
    for n in (1, len(instances)):
        result = serve(image_bytes=tf.constant(instances[:n]))
        out[n] = {k: v.numpy().tolist() for k, v in result.items() if v.dtype != tf.string}
        out[n]["classes"] = [[c.decode() for c in row] for row in result["classes"].numpy()]
        out[n]["error"] = [e.decode() for e in result["error"].numpy()]
    sig = serve.structured_input_signature[1]["image_bytes"]
    out["input"] = [sig.dtype.name, sig.shape.as_list()]
    # Serving needs TensorFlow alone: nothing of sft_tf was imported to load and call it.
    assert not any(m.startswith("sft_tf") for m in sys.modules), "sft_tf was imported"
    print(json.dumps(out))
    """
)


def test_export_reloads_in_a_fresh_tensorflow_only_process(published, tiny_model, images):
    path = published  # top_k=2
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(path), *map(str, images)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["input"] == ["string", [None]]
    pixels = np.stack(
        [decode.decode_image(tf.constant(p.read_bytes()), 32).numpy() for p in images]
    )
    expected = tiny_model.predict(pixels, verbose=0)
    batch = out[str(len(images))]
    np.testing.assert_allclose(batch["probabilities"], expected, atol=1e-4)
    np.testing.assert_allclose(out["1"]["probabilities"], expected[:1], atol=1e-4)
    assert np.shape(batch["classes"]) == (7, 2) and np.shape(batch["scores"]) == (
        len(images),
        2,
    )
    top1 = [CLASSES[i] for i in expected.argmax(-1)]
    assert [row[0] for row in batch["classes"]] == top1
    assert batch["error"] == [""] * len(images)  # every image answered
    assert [row[0] for row in batch["class_ids"]] == expected.argmax(-1).tolist()
    # `sft-tf predict` (predict_files) tells a client the same thing.
    assert [r["classes"][0] for r in predict_lib.predict_files(path, map(str, images))] == top1


def test_saved_model_cli_lists_three_signatures_with_dynamic_batch(published):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run(
        [cli, "show", "--dir", str(published), "--all"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    for name, dtype in (
        ("serving_default", "DT_STRING"),
        ("serving_images", "DT_UINT8"),
        ("serving_tf_example", "DT_STRING"),
    ):
        section = out.split(f"signature_def['{name}']")[1].split("signature_def[")[0]
        assert f"dtype: {dtype}" in section
        assert "shape: (-1" in section  # dynamic batch
        for output in ("probabilities", "classes", "class_ids", "scores", "error"):
            assert f"outputs['{output}']" in section


def test_a_session_loader_restores_the_variables_through_the_saver(published, tiny_model, images):
    """TF Serving's C++ loader restores a SavedModel's variables by running the restore op its
    saver_def names, as TensorFlow's TF1 loader does in a Session (also `saved_model_cli run`);
    `tf.saved_model.load` restores through the object graph instead and would not notice a
    variable the graph reads but the saver does not restore."""
    pixels = decode.decode_images([p.read_bytes() for p in images], 32)
    expected = tiny_model.predict(pixels, verbose=0)
    assert np.ptp(expected, axis=0).max() > 1e-3  # the images get different answers
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(published))
        assert meta.saver_def.restore_op_name
        signature = meta.signature_def["serving_images"]
        got = session.run(
            signature.outputs["probabilities"].name, {signature.inputs["images"].name: pixels}
        )
    np.testing.assert_allclose(got, expected, atol=parity.PARITY_TOLERANCE)


def test_tf_example_signature_matches_bytes(published, images):
    loaded = tf.saved_model.load(str(published))
    encoded = [p.read_bytes() for p in images]
    from_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    from_examples = loaded.signatures["serving_tf_example"](
        examples=tf.constant([parity.image_example(b) for b in encoded])
    )
    np.testing.assert_allclose(
        from_examples["probabilities"].numpy(), from_bytes["probabilities"].numpy(), atol=1e-6
    )


def test_labels_asset_manifest_and_warmup_records(published, images, pixel_limit):
    from tensorflow_serving.apis import prediction_log_pb2

    assert (published / "assets" / "labels.txt").read_text().split() == CLASSES
    assert export.read_class_names(published) == CLASSES
    manifest = export.read_manifest(published)
    assert manifest["class_names"] == CLASSES and manifest["image_size"] == 32
    assert manifest["backbone"] == "MobileNetV2"
    assert manifest["test_metrics"]["phase2"]["accuracy"] == 0.5
    assert manifest["versions"]["tensorflow"] == tf.__version__
    assert manifest["parity_max_abs_diff"] <= parity.PARITY_TOLERANCE
    assert manifest["max_image_pixels"] == pixel_limit  # the run's value, not the default
    records = list(tf.data.TFRecordDataset(str(published / layout.WARMUP_FILE)).as_numpy_iterator())
    assert 1 <= len(records) <= 3
    loaded = tf.saved_model.load(str(published))
    for i, record in enumerate(records):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        # The request is a real image that the signature accepts, as TF Serving will replay it.
        encoded = tf.make_ndarray(request.inputs["image_bytes"])
        assert encoded.tolist() == [images[i].read_bytes()]
        loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))


def too_many_pixels(width: int, height: int, limit: int) -> str:
    """The `error` an export answers for an image over its pixel limit."""
    return (
        f"image is {width} x {height} = {width * height} pixels, above this model's limit of "
        f"{limit} pixels (data.max_image_pixels when it was exported); downscale it before sending"
    )


_REFUSED_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import base64, json, resource, sys
    import numpy as np
    import tensorflow as tf
    export_dir, files = sys.argv[1], sys.argv[2:]
    sig = tf.saved_model.load(export_dir).signatures
    # A TF Serving REST body, decoded the way the server decodes {"b64": ...}.
    body = json.dumps({"instances": [{"b64": base64.b64encode(open(f, "rb").read()).decode()}
                                     for f in files]})
    instances = [base64.b64decode(i["b64"]) for i in json.loads(body)["instances"]]

    def example(encoded):
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
        features = tf.train.Features(feature={"image/encoded": feature})
        return tf.train.Example(features=features).SerializeToString()

    def lists(out):  # strings as text, numbers as numbers: what TF Serving's JSON shows
        return {k: (np.char.decode(v.numpy().astype(bytes)) if v.dtype == tf.string
                    else v.numpy()).tolist() for k, v in out.items()}

    alone = [lists(sig["serving_default"](image_bytes=tf.constant([b]))) for b in instances[::2]]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB: the peak so far
    out = {"default": lists(sig["serving_default"](image_bytes=tf.constant(instances)))}
    out["tf_example"] = lists(
        sig["serving_tf_example"](examples=tf.constant([example(b) for b in instances]))
    )
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    pixels = tf.zeros([2, 40, 40, 3], tf.uint8)
    out["images_error"] = lists(sig["serving_images"](images=pixels))["error"]
    print(json.dumps({**out, "alone": alone, "grown_mb": grown / 1024}))
    """
)


def test_an_oversized_image_gets_an_error_row_and_the_batch_is_answered(
    published, images, huge_png, pixel_limit
):
    """TF Serving answers a batch with one set of tensors: the 20000 x 20000 PNG between two
    good images is refused in its own row from its header, never decoded (the process's peak
    memory stays flat: decoding it takes 1.2 GB), and the good rows are answered as alone."""
    files = [images[0], huge_png, images[1]]
    result = subprocess.run(
        [sys.executable, "-c", _REFUSED_IN_A_FRESH_PROCESS, str(published), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["grown_mb"] < 200, f"peak memory grew {out['grown_mb']:.0f} MB: it was decoded"
    for name in ("default", "tf_example"):
        got = out[name]
        assert got["error"] == ["", too_many_pixels(20000, 20000, pixel_limit), ""], name
        assert got["classes"][1] == ["", ""] and got["class_ids"][1] == [-1, -1]
        assert got["scores"][1] == [0.0, 0.0] and got["probabilities"][1] == [0.0] * 3
        for row, alone in zip((0, 2), out["alone"]):
            assert got["classes"][row] == alone["classes"][0] and alone["error"] == [""]
            assert got["classes"][row][0] in CLASSES
            np.testing.assert_allclose(
                got["probabilities"][row], alone["probabilities"][0], atol=1e-5
            )
    assert out["images_error"] == ["", ""]  # pixels come decoded: every row answered


def _each_format(width: int, height: int) -> dict[str, bytes]:
    """One-colour images of this size in every format and header layout the export reads,
    written by Pillow."""
    rgb = Image.new("RGB", (width, height), (200, 40, 40))
    return {
        "jpeg": pil_bytes(rgb, "JPEG"),
        "cmyk jpeg": pil_bytes(rgb.convert("CMYK"), "JPEG"),
        "png": pil_bytes(rgb, "PNG"),
        "gif": pil_bytes(rgb, "GIF"),
        "bmp": pil_bytes(rgb, "BMP"),
        "webp VP8": pil_bytes(rgb, "WEBP"),
        "webp VP8L": pil_bytes(rgb, "WEBP", lossless=True),
        # (Pillow writes an opaque RGBA image as plain VP8: this one is see-through.)
        "webp VP8X": pil_bytes(Image.new("RGBA", (width, height), (200, 40, 40, 128)), "WEBP"),
    }


def test_every_format_over_the_limit_is_refused_and_at_the_limit_answered(published, pixel_limit):
    over, at = _each_format(1001, 1000), _each_format(1000, 1000)  # the limit is 1000 x 1000
    assert pixel_limit == 1000 * 1000
    serve = tf.saved_model.load(str(published)).signatures["serving_default"]
    out = serve(image_bytes=tf.constant([*over.values(), *at.values()]))
    errors = [e.decode() for e in out["error"].numpy()]
    refused = too_many_pixels(1001, 1000, pixel_limit)
    assert dict(zip(over, errors[: len(over)])) == {name: refused for name in over}
    assert dict(zip(at, errors[len(over) :])) == {name: "" for name in at}
    ids = out["class_ids"].numpy()
    assert (ids[: len(over)] == -1).all() and (ids[len(over) :] >= 0).all()


_KILLED_EXPORT = textwrap.dedent(
    """
    import sys
    from sft_tf.serving import export
    from tests.helpers import tiny_classifier
    export.export_for_serving(tiny_classifier(3), ["a", "b", "c"], 32, sys.argv[1])
    """
)


@pytest.mark.slow  # a real SIGKILL mid-write: ~20 s
def test_export_killed_mid_write_publishes_nothing(tmp_path, tiny_model):
    root = tmp_path / "tiny"
    (root / "1").mkdir(parents=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, str(root)], env=env)
    deadline = time.time() + 120
    while not list(root.glob(f"{layout.STAGING_PREFIX}*/saved_model.pb")):
        assert proc.poll() is None and time.time() < deadline, "export never started writing"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # TF Serving only loads integer folders: the half-written one is hidden and unpublished.
    assert export.versions(root) == [1]
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == ["1"]
    # The next export clears the dead exporter's leftovers and publishes the next version.
    assert export.export_for_serving(tiny_model, CLASSES, 32, root).name == "2"
    assert sorted(p.name for p in root.iterdir()) == ["1", "2"]


@pytest.mark.slow  # kill + CLI export: ~25 s
def test_cli_exports_an_interrupted_run(tmp_path, image_folders):
    from tests.helpers import kill_when, run_state, sft_tf, tiny_train_args

    args = tiny_train_args(
        image_folders["train"],
        image_folders["test"],
        "--config.phase2.epochs=30",
        "--workdir=run",
    )
    # Killed once a checkpoint is written (phase 1's end, or an epoch end after it).
    kill_when(tmp_path, args, lambda s, _: bool(s and s.get("checkpoint")))
    assert not (tmp_path / "run" / "metrics.json").exists()  # really interrupted
    assert not (tmp_path / "run" / "model.weights.h5").exists()  # written when training ends
    out = sft_tf("export", "--workdir=run", cwd=tmp_path).stdout
    newest = run_state(tmp_path)["checkpoint"]
    assert f"Unfinished run: the weights of checkpoint {newest}, phase2 after" in out
    assert "saved_models/tiny/1" in out and out.count("Exported ") == 1
    # The slow part says what it is doing as it goes.
    assert "writing the SavedModel" in out and "checking the reloaded SavedModel" in out
    manifest = export.read_manifest(tmp_path / "saved_models" / "tiny" / "1")
    assert manifest["class_names"] == ["cat", "dog", "fox"] and manifest["test_metrics"] == {}


@pytest.mark.slow
def test_export_refuses_another_label_set_before_writing(tmp_path, tiny_model, published):
    root = tmp_path / "tiny"
    shutil.copytree(published, root / "1")  # a published version with CLASSES
    for changed in (["cat", "dog", "owl"], ["dog", "cat", "fox"]):
        with pytest.raises(UserError) as refused:
            export.export_for_serving(tiny_model, changed, 32, root)
        assert sorted(p.name for p in root.iterdir()) == ["1"]  # no version, no staging folder
        message = str(refused.value)
        assert f"{root}: the newest version 1 serves classes [cat, dog, fox]" in message
        assert f"this model has [{', '.join(changed)}]" in message
        assert "--config.export.allow_class_change=true" in message and "config.name" in message
    assert "(the same names in another order)" in message
    export.check_class_change(root, CLASSES, allow=False)  # the same names, the same order
    many = [f"class{i:02d}" for i in range(20)]
    with pytest.raises(UserError, match=r"\[class00, .*, class05, \+ 14 more\]"):
        export.check_class_change(root, many, allow=False)
    path = export.export_for_serving(
        tiny_model, ["cat", "dog", "owl"], 32, root, allow_class_change=True
    )
    assert path.name == "2" and export.read_class_names(path) == ["cat", "dog", "owl"]


def test_a_phone_photo_is_served_upright(tmp_path):
    """EXIF orientation is applied inside the SavedModel, as in training: a photo stored
    sideways with a rotate-90 tag is served as its upright pixels are."""
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    init = keras.initializers.RandomNormal(stddev=0.05, seed=0)
    where = keras.Model(inputs, keras.layers.Dense(3, "softmax", kernel_initializer=init)(x))
    y, x = np.mgrid[0:40, 0:90]
    stored = np.stack([x * 2.8, y * 6, (x + y) * 2], -1).astype(np.uint8)  # smooth: JPEG-safe
    stored[5:15, 5:30] = 255  # and asymmetric
    path = export.export_for_serving(where, CLASSES, 32, tmp_path / "where")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    served = serve(image_bytes=tf.constant([exif_jpeg(stored, 6)]))["probabilities"].numpy()

    def predicted(pixels):
        png = tf.io.encode_png(np.ascontiguousarray(pixels))
        return where.predict(decode.decode_image(png, 32).numpy()[None], verbose=0)

    upright, sideways = predicted(np.rot90(stored, -1)), predicted(stored)
    assert np.abs(served - upright).max() < 0.1 * np.abs(served - sideways).max()
