"""Predicting files from an export alone: results, per-file errors, the CLI, broken exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from sft_tf.errors import UserError
from sft_tf.serving import export
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
