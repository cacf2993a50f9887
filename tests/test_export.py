"""Export layout, signatures, parity, and a reload in a fresh TensorFlow-only process."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from sft_tf import data, export
from tests.conftest import tiny_classifier, write_image

CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_classifier(3, seed=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate(
        [(32, 32), (50, 41), (17, 80), (64, 64), (33, 29), (40, 40), (90, 60)]
    ):
        ext = ".png" if i % 2 else ".jpg"
        paths.append(
            write_image(folder / f"{i}{ext}", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        )
    return paths


def test_versions_are_published_atomically_and_increase(tmp_path, tiny_model, images):
    root = tmp_path / "saved_models" / "tiny"
    (root / "7").mkdir(parents=True)  # an existing version from an earlier run is kept
    (root / "7" / "saved_model.pb").write_bytes(b"old")
    check = [p.read_bytes() for p in images]
    first = export.export_for_serving(tiny_model, CLASSES, 32, root, top_k=2, check_images=check)
    second = export.export_for_serving(tiny_model, CLASSES, 32, root, top_k=2)
    assert (first.name, second.name) == ("8", "9")
    assert sorted(p.name for p in root.iterdir()) == ["7", "8", "9"]  # no staging folder left
    assert (root / "7" / "saved_model.pb").read_bytes() == b"old"


def test_failed_export_publishes_nothing(tmp_path, tiny_model):
    root = tmp_path / "tiny"
    with pytest.raises(tf.errors.InvalidArgumentError):
        export.export_for_serving(tiny_model, CLASSES, 32, root, check_images=[b"not an image"])
    assert list(root.iterdir()) == []


def test_verify_export_catches_a_different_model(tmp_path, tiny_model):
    path = export.export_for_serving(tiny_model, CLASSES, 32, tmp_path / "tiny")
    other = tiny_classifier(3, seed=1)
    with pytest.raises(RuntimeError, match="differs from the trained model"):
        export.verify_export(path, other, 32, export._sample_images(32))


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
        out[n] = {k: v.numpy().tolist() for k, v in result.items() if k != "classes"}
        out[n]["classes"] = [[c.decode() for c in row] for row in result["classes"].numpy()]
    sig = serve.structured_input_signature[1]["image_bytes"]
    out["input"] = [sig.dtype.name, sig.shape.as_list()]
    # Serving needs TensorFlow alone: nothing of sft_tf was imported to load and call it.
    assert not any(m.startswith("sft_tf") for m in sys.modules), "sft_tf was imported"
    print(json.dumps(out))
    """
)


def test_export_reloads_in_a_fresh_tensorflow_only_process(tmp_path, tiny_model, images):
    path = export.export_for_serving(tiny_model, CLASSES, 32, tmp_path / "tiny", top_k=2)
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(path), *map(str, images)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["input"] == ["string", [None]]
    pixels = np.stack([data.decode_image(tf.constant(p.read_bytes()), 32).numpy() for p in images])
    expected = tiny_model.predict(pixels, verbose=0)
    batch = out[str(len(images))]
    np.testing.assert_allclose(batch["probabilities"], expected, atol=1e-4)
    np.testing.assert_allclose(out["1"]["probabilities"], expected[:1], atol=1e-4)
    assert np.shape(batch["classes"]) == (7, 2) and np.shape(batch["scores"]) == (7, 2)
    top1 = [CLASSES[i] for i in expected.argmax(-1)]
    assert [row[0] for row in batch["classes"]] == top1
    assert [row[0] for row in batch["class_ids"]] == expected.argmax(-1).tolist()


def test_predict_files_reports_unreadable_files_and_predicts_the_rest(tmp_path, tiny_model, images):
    path = export.export_for_serving(tiny_model, CLASSES, 32, tmp_path / "tiny", top_k=3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    results = export.predict_files(path, [str(images[0]), str(broken), str(tmp_path / "gone.png")])
    assert results[0]["classes"][0] in CLASSES and len(results[0]["scores"]) == 3
    assert "error" in results[1] and "error" in results[2]
    assert export.resolve_export(tmp_path / "tiny") == path
