"""Predicting files from an export alone: results, per-file errors, the CLI, broken exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.config.schema import DEFAULT_MAX_IMAGE_PIXELS
from sft_tf.errors import UserError
from sft_tf.serving import export, layout
from sft_tf.serving import predict as predict_lib
from tests.helpers import sft_tf

CLASSES = ["cat", "dog", "fox"]


def test_predict_files_reports_unreadable_files_and_predicts_the_rest(tmp_path, published, images):
    path = published  # exported with top_k=2
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    results = predict_lib.predict_files(
        path, [str(images[0]), str(broken), str(tmp_path / "gone.png")]
    )
    assert results[0]["classes"][0] in CLASSES and len(results[0]["scores"]) == 2
    assert "error" in results[1] and "error" in results[2]
    assert export.resolve_export(path.parent) == path


def test_many_files_are_predicted_in_batches_as_one_at_a_time(tmp_path, published, images):
    """More files than a serving call takes (predict.PREDICT_BATCH), a broken one among them:
    each result is the one a call on that file alone gives, in the order given."""
    paths = []
    for i in range(predict_lib.PREDICT_BATCH + 9):
        paths.append(tmp_path / f"{i:02d}{images[i % len(images)].suffix}")
        paths[-1].write_bytes(images[i % len(images)].read_bytes())
    paths[20].write_bytes(b"not an image")
    results = predict_lib.predict_files(published, [str(tmp_path)])
    assert [r["file"] for r in results] == [str(p) for p in paths]
    serve = predict_lib.load_signature(published)
    for path, result in zip(paths, results):
        if path == paths[20]:
            assert result["error"].startswith("not an image")
            continue
        alone = serve(image_bytes=tf.constant([path.read_bytes()]))
        assert result["classes"] == [c.decode() for c in alone["classes"].numpy()[0]]
        np.testing.assert_allclose(result["scores"], alone["scores"].numpy()[0], atol=1e-4)


@pytest.mark.slow
def test_cli_predict_names_each_bad_file_and_predicts_the_rest(tmp_path, published, images):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "no_files" / "sub").mkdir(parents=True)
    good = images[1]  # a PNG
    files = [good, "empty.jpg", "notes.txt", "gone.png", "no_files"]
    result = sft_tf("predict", f"--model={published.parent}", *files, cwd=tmp_path, check=False)
    assert result.returncode == 1, result.stderr
    (row,) = result.stdout.splitlines()  # the table holds the predictions only
    assert row.startswith(str(good)) and row.split()[1] in CLASSES
    assert result.stderr.splitlines() == [
        "sft-tf: empty.jpg: empty file (0 bytes)",
        "sft-tf: notes.txt: not an image (unrecognised format; JPEG, PNG, GIF, BMP and WebP "
        "are read)",
        "sft-tf: gone.png: cannot read: No such file or directory",
        "sft-tf: no_files: folder has no files",
    ]
    as_json = sft_tf(
        "predict", f"--model={published.parent}", "--json", *files, cwd=tmp_path, check=False
    )
    results = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and [r["file"] for r in results] == list(map(str, files))
    assert results[0]["classes"][0] in CLASSES and all("error" in r for r in results[1:])


def test_cli_predict_on_an_empty_folder_is_one_line(tmp_path, published):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / ".DS_Store").write_bytes(b"\0")  # hidden files are not images
    result = sft_tf("predict", f"--model={published.parent}", "photos", cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "sft-tf: error: nothing to predict: photos has no files in it\n"


def test_cli_predict_on_a_junk_saved_model_says_it_cannot_load_it(tmp_path, images):
    (tmp_path / "x" / "1").mkdir(parents=True)
    (tmp_path / "x" / "1" / "saved_model.pb").write_bytes(b"not a model")
    result = sft_tf("predict", "--model=x", images[1], cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "sft-tf: error: cannot load the SavedModel in x/1: saved_model.pb is corrupt (Wire "
        "format was corrupt); re-export it (sft-tf export --workdir=RUN_DIR)\n"
    )


def test_load_signature_reports_a_version_without_saved_model_pb(tmp_path, published):
    (tmp_path / "x" / "2").mkdir(parents=True)
    with pytest.raises(UserError, match=r"cannot load the SavedModel in .*x/2: it has no saved_"):
        predict_lib.load_signature(export.resolve_export(tmp_path / "x"))
    with pytest.raises(UserError, match="has no serving_bogus signature"):
        predict_lib.load_signature(published, "serving_bogus")
    assert predict_lib.load_signature(published, "serving_images") is not None


def _measured_cli(cwd, *args) -> tuple[int, str, str, float]:
    """The real CLI in a subprocess: (exit status, stdout, stderr, its peak RSS in MB)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(cwd / "out.txt", "w") as out, open(cwd / "err.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sft_tf", *args], cwd=cwd, env=env, stdout=out, stderr=err
        )
        deadline = time.time() + 300
        # wait4, not wait: it also gives the child's own resource usage, peak memory included.
        while not (waited := os.wait4(proc.pid, os.WNOHANG))[0]:
            if time.time() > deadline:
                proc.kill()
                raise AssertionError(f"sft-tf {args[0]} took over 300 s")
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(waited[1])
    stdout, stderr = (cwd / "out.txt").read_text(), (cwd / "err.txt").read_text()
    return proc.returncode, stdout, stderr, waited[2].ru_maxrss / 1024


@pytest.mark.slow
def test_cli_predict_names_an_oversized_file_without_decoding_it(
    tmp_path, published, images, huge_png, pixel_limit
):
    shutil.copy(huge_png, tmp_path / "huge.png")
    good = str(images[1])
    status, stdout, stderr, peak = _measured_cli(
        tmp_path, "predict", f"--model={published.parent}", good, "huge.png"
    )
    assert status == 1, stderr
    (row,) = stdout.splitlines()  # the other image is predicted
    assert row.startswith(good) and row.split()[1] in CLASSES
    # The line says what the export itself answers for that image.
    serve = predict_lib.load_signature(published)
    answer = serve(image_bytes=tf.constant([huge_png.read_bytes()]))["error"].numpy()[0].decode()
    assert stderr.splitlines() == [f"sft-tf: huge.png: {answer}"]
    assert answer.startswith(f"image is 20000 x 20000 = 400000000 pixels, above this model's "
                             f"limit of {pixel_limit} pixels")  # fmt: skip
    # Decoding it would take 1.2 GB at least; the same command without it is the baseline.
    baseline = _measured_cli(tmp_path, "predict", f"--model={published.parent}", good)[3]
    assert peak - baseline < 200, f"peak RSS {peak:.0f} MB vs {baseline:.0f} MB: it was decoded"


def test_predict_reports_the_rows_the_export_refuses(tmp_path, published, images, huge_png):
    """A file the export's graph refuses in its row (here a manifest that claims a higher
    limit than the graph's, so predict sends it) is reported as a bad file, its batch
    answered."""
    copy = tmp_path / "tiny" / "1"
    shutil.copytree(published, copy)
    manifest = json.loads((copy / layout.MANIFEST_FILE).read_text())
    (copy / layout.MANIFEST_FILE).write_text(json.dumps({**manifest, "max_image_pixels": 10**12}))
    paths = [str(images[0]), str(huge_png), str(images[1])]
    results = predict_lib.predict_files(copy, paths)
    assert results[1]["file"] == str(huge_png) and set(results[1]) == {"file", "error"}
    assert results[1]["error"].startswith("image is 20000 x 20000 = 400000000 pixels")
    alone = predict_lib.predict_files(published, [paths[0], paths[2]])
    for got, expected in zip([results[0], results[2]], alone):
        assert got["classes"] == expected["classes"] and got["classes"][0] in CLASSES
        np.testing.assert_allclose(got["scores"], expected["scores"], atol=2e-4)


def _write_export_from_before_the_limit(folder) -> None:
    """An export as sft-tf wrote them before the pixel limit: serving_default with the four
    old outputs (no `error`), decoding any size in full; a manifest without max_image_pixels."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes):
        def mean_colour(encoded):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1])

        colour = tf.map_fn(mean_colour, image_bytes, fn_output_signature=tf.float32)
        probabilities = tf.nn.softmax(colour / 50.0)
        scores, ids = tf.math.top_k(probabilities, k=2)
        classes = tf.gather(tf.constant(CLASSES), ids)
        return {
            "probabilities": probabilities,
            "classes": classes,
            "class_ids": ids,
            "scores": scores,
        }

    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
    (folder / layout.LABELS_FILE).parent.mkdir(exist_ok=True)
    (folder / layout.LABELS_FILE).write_text("\n".join(CLASSES) + "\n")
    (folder / layout.MANIFEST_FILE).parent.mkdir(exist_ok=True)
    (folder / layout.MANIFEST_FILE).write_text(json.dumps({"class_names": CLASSES}))


def test_an_export_from_before_the_limit_predicts_and_refuses_at_the_default(
    tmp_path, images, huge_png
):
    old = tmp_path / "old" / "1"
    _write_export_from_before_the_limit(old)
    assert predict_lib.pixel_limit(old) == DEFAULT_MAX_IMAGE_PIXELS
    good, huge = predict_lib.predict_files(old, [str(images[0]), str(huge_png)])
    assert good["classes"][0] in CLASSES and len(good["scores"]) == 2
    # Its graph would decode the PNG in full (1.2 GB): it is never sent.
    assert huge == {
        "file": str(huge_png),
        "error": "image is 20000 x 20000 = 400000000 pixels, above this model's limit of "
        f"{DEFAULT_MAX_IMAGE_PIXELS} pixels (data.max_image_pixels when it was exported); "
        "downscale it before sending",
    }
