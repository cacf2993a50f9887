"""sft_tf/commands/evaluate.py: which model `evaluate` scores (a workdir's or an export's), what
it refuses, and what it writes and prints; on workdirs made here from real files (a tiny
untrained model's weights) and, in the slow test, a real export of the same model."""

import json

import numpy as np
import pytest

from sft_tf.commands import evaluate
from sft_tf.commands import export as export_command
from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.training import inputs, trained
from sft_tf.training.layout import CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE
from tests.helpers import make_image_folder, tiny_config, tiny_model

CLASSES = ["cat", "dog", "fox"]


def _never_called():
    raise AssertionError("the config was read, but this evaluation needs none")


def _workdir(tmp_path, test: str = "", calibrated: bool = False):
    """A finished run's workdir without the training: config, labels, a tiny model's weights
    (calibrated: with working activations, so that images get different scores)."""
    train = make_image_folder(tmp_path / "train", per_class=3)
    config = tiny_config(data__on_leakage="warn", data__test=test)
    config.data.train = f"folder:{train}"
    config.data.cache_dir = str(tmp_path / "cache")
    config.export.dir = str(tmp_path / "saved_models")
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_files.save(config, workdir / CONFIG_FILE)
    (workdir / LABELS_FILE).write_text("\n".join(CLASSES) + "\n")
    tiny_model(3, calibrated=calibrated).save_weights(workdir / WEIGHTS_FILE)
    (workdir / "metrics.json").write_text(json.dumps({"classes": CLASSES}))
    return config, workdir


def test_it_needs_a_workdir_or_a_model():
    with pytest.raises(UserError) as raised:
        evaluate.main(None, None, None, _never_called)
    assert str(raised.value) == "`sft-tf evaluate` needs --workdir or --model"


def test_an_export_root_without_versions_is_refused_before_the_config_is_read(tmp_path):
    with pytest.raises(UserError) as raised:
        evaluate.main(None, str(tmp_path), None, _never_called)
    assert str(raised.value) == (
        f"--model={tmp_path}: no integer version folders with a SavedModel inside"
    )


def test_a_run_without_a_test_split_is_refused_and_writes_nothing(tmp_path):
    _, workdir = _workdir(tmp_path)
    with pytest.raises(UserError) as raised:
        evaluate.evaluate_workdir(workdir)
    assert str(raised.value) == "config.data.test is empty; set it to evaluate"
    assert not (workdir / "evaluation.json").exists() and not (workdir / "report").exists()


@pytest.mark.slow  # a report, an export and its evaluations: ~30-40 s
def test_a_workdir_and_its_export_score_the_same(tmp_path, capsys):
    test = make_image_folder(tmp_path / "test", per_class=4, seed=1)
    config, workdir = _workdir(tmp_path, test=f"folder:{test}", calibrated=True)
    capsys.readouterr()
    assert evaluate.main(str(workdir), None, None, _never_called) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((workdir / "evaluation.json").read_text())
    assert printed == written
    for name in ("report.md", "confusion_matrix.json", "confusion_matrix.png"):
        assert (workdir / "report" / name).is_file(), name
    # The accuracy of the workdir's own model on the test images, computed here.
    _, model, _ = trained.load_trained(workdir)
    examples = inputs.load_split(config.data.test, "f", None, "c")
    batches = inputs.make_dataset(config, examples, training=False, one_hot=False)
    labels = np.concatenate([y for _, y in batches])
    predicted = np.concatenate([model.predict(x, verbose=0).argmax(-1) for x, _ in batches])
    assert written["accuracy"] == round(float((predicted == labels).mean()), 4)

    path = export_command.export_workdir(workdir)
    capsys.readouterr()
    assert evaluate.main(None, str(path.parent), None, lambda: config) == 0  # the newest
    lines = capsys.readouterr().out.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the JSON printed last
    from_export = json.loads("\n".join(lines[start:]))
    assert from_export["accuracy"] == pytest.approx(written["accuracy"])
    metrics = evaluate.evaluate_export(path, config)
    assert "confusion_matrix" in metrics and "confusion_matrix" not in from_export
    assert from_export == {k: v for k, v in metrics.items() if k != "confusion_matrix"}
    config.data.test = f"folder:{tmp_path / 'train'}"  # right classes, other images: fine
    evaluate.evaluate_export(path, config)
    other = make_image_folder(tmp_path / "other", per_class=1)
    (other / "fox").rename(other / "wolf")
    config.data.test = f"folder:{other}"
    with pytest.raises(UserError) as raised:
        evaluate.evaluate_export(path, config)
    assert str(raised.value) == (
        f"config.data.test='folder:{other}' has different classes from the export {path}: "
        "missing ['fox']; not in the export " + str(path) + " ['wolf']"
    )
