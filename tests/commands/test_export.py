"""sft_tf/commands/export.py: what `sft-tf export` refuses and what it writes, on workdirs made
here from real files (config.json, labels.txt, a tiny model's weights) without training."""

import json

import pytest

from sft_tf.commands import export
from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.lock import WorkdirLock
from sft_tf.training.layout import CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE
from tests.helpers import make_image_folder, snapshot, tiny_config, tiny_model

CLASSES = ["cat", "dog", "fox"]


def _finished_workdir(tmp_path, weights: bool = True, **changes):
    """A workdir as a finished run leaves it, minus the training: its config, labels, weights
    (a freshly built tiny model's) and metrics."""
    config = tiny_config(**changes)
    config.export.dir = str(tmp_path / "saved_models")
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_files.save(config, workdir / CONFIG_FILE)
    (workdir / LABELS_FILE).write_text("\n".join(CLASSES) + "\n")
    if weights:
        tiny_model(len(CLASSES)).save_weights(workdir / WEIGHTS_FILE)
    (workdir / "metrics.json").write_text(json.dumps({"classes": CLASSES}))
    return config, workdir


def _files(workdir) -> dict[str, str]:
    """The workdir's files but the lock file (which any command may create)."""
    return {k: v for k, v in snapshot(workdir).items() if k != ".lock"}


def test_a_workdir_another_process_works_in_is_refused_untouched(tmp_path):
    _, workdir = _finished_workdir(tmp_path, weights=False)
    holder = WorkdirLock()
    holder.acquire(workdir)
    before = snapshot(workdir)
    try:
        with pytest.raises(UserError) as raised:
            export.export_workdir(workdir)
    finally:
        holder.release()
    assert str(raised.value).startswith(f"{workdir} is in use by another sft-tf process (PID ")
    assert snapshot(workdir) == before
    assert not (tmp_path / "saved_models").exists()


def test_a_folder_without_a_run_is_named(tmp_path):
    with pytest.raises(UserError) as raised:
        export.export_workdir(tmp_path)
    assert str(raised.value) == (
        f"{tmp_path / CONFIG_FILE} not found; is this a workdir written by `sft-tf train`?"
    )


def test_an_empty_export_dir_is_refused_with_the_flag_that_fixes_it(tmp_path, capsys):
    """--config.export.dir= on the command line: said, then refused; config.json unchanged."""
    _config, workdir = _finished_workdir(tmp_path)
    before = _files(workdir)
    settings = tiny_config()
    settings.export.dir = ""
    with pytest.raises(UserError) as raised:
        export.export_workdir(workdir, settings)
    assert str(raised.value) == (
        "config.export.dir is empty, so there is nowhere to export to; give one with "
        "--config.export.dir=saved_models"
    )
    assert "This version's export settings: export.dir='' (config.json is unchanged)" in (
        capsys.readouterr().out
    )
    assert _files(workdir) == before


@pytest.mark.slow  # one real export with its reload and parity checks: ~15 s
def test_the_next_version_is_written_and_the_run_names_it(tmp_path, capsys):
    """Exports again under another name (a --config.name override), checking on real images
    when the data is there; metrics.json then names the new version, config.json is kept."""
    train = make_image_folder(tmp_path / "train", per_class=4, seed=0)
    test = make_image_folder(tmp_path / "test", per_class=2, seed=1)
    # Noisy images of one colour per class look alike to the leakage check: not its test.
    config, workdir = _finished_workdir(tmp_path, data__on_leakage="warn")
    config.data.train, config.data.test = f"folder:{train}", f"folder:{test}"
    config_files.save(config, workdir / CONFIG_FILE)
    saved_config = (workdir / CONFIG_FILE).read_text()
    (tmp_path / "saved_models" / "other" / "4").mkdir(parents=True)  # an older version
    settings = config_files.load(workdir / CONFIG_FILE)
    settings.unlock()
    settings.name = "other"
    path = export.export_workdir(workdir, settings)
    assert path == tmp_path / "saved_models" / "other" / "5"
    assert (path / "saved_model.pb").is_file()
    assert (path / "assets" / "labels.txt").read_text().splitlines() == CLASSES
    assert json.loads((workdir / "metrics.json").read_text()) == {
        "classes": CLASSES,
        "export": str(path),
    }
    assert (workdir / CONFIG_FILE).read_text() == saved_config
    out = capsys.readouterr().out
    assert "This version's export settings: name='other' (config.json is unchanged)" in out
    assert "Data unavailable" not in out  # checked on the run's real images
