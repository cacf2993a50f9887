"""sft_tf/commands/train.py: the order of `train`'s checks, in-process and without training.
Every refusal comes before the workdir is touched (a locked workdir, a split smaller than a
batch, an export name that would switch label sets), and a workdir holding the finished run
asked for is reported, not trained again. (Whole runs: tests/scenarios/.)"""

import pytest

from sft_tf.commands import train
from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.lock import WorkdirLock
from sft_tf.training.layout import CONFIG_FILE
from sft_tf.training.state import RunState
from tests.helpers import make_image_folder, snapshot, tiny_config


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory):
    """12 images of 3 classes: enough for a batch of 8."""
    return make_image_folder(tmp_path_factory.mktemp("train") / "train", per_class=4)


def _config(train_folder, tmp_path, **changes):
    config = tiny_config(runtime__strategy="one_device", **changes)
    config.data.train = f"folder:{train_folder}"
    config.data.cache_dir = str(tmp_path / "cache")
    config.export.dir = str(tmp_path / "saved_models")
    return config


def _files(folder) -> dict[str, str]:
    return {k: v for k, v in snapshot(folder).items() if k != ".lock"}


def test_a_workdir_another_process_works_in_is_refused_untouched(train_folder, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("an earlier run's")
    holder = WorkdirLock()
    holder.acquire(workdir)
    try:
        with pytest.raises(UserError, match=r"is in use by another sft-tf process \(PID \d+\)"):
            train.run(_config(train_folder, tmp_path), workdir)
    finally:
        holder.release()
    assert _files(workdir) == {"notes.txt": snapshot(workdir)["notes.txt"]}


def test_a_split_smaller_than_a_batch_is_refused_before_the_workdir_exists(train_folder, tmp_path):
    config = _config(train_folder, tmp_path, data__global_batch_size=16)
    with pytest.raises(UserError) as raised:
        train.run(config, tmp_path / "run")
    assert str(raised.value) == (
        "config.data.global_batch_size=16 is larger than the training split (12 images after "
        "sampling and hold-out); lower it to <= 12 or add images"
    )
    assert not (tmp_path / "run").exists()


def test_an_export_that_would_switch_label_sets_is_refused_before_training(train_folder, tmp_path):
    served = tmp_path / "saved_models" / "tiny" / "3" / "assets"
    served.mkdir(parents=True)
    (served / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(UserError) as raised:
        train.run(_config(train_folder, tmp_path), tmp_path / "run")
    assert str(raised.value) == (
        f"{tmp_path / 'saved_models' / 'tiny'}: the newest version 3 serves classes [cat, dog], "
        "this model has [cat, dog, fox] (new [fox]); TF Serving would switch label sets "
        "without notice. Set --config.export.allow_class_change=true to publish it as version 4 "
        "anyway, or use another config.name"
    )
    assert not (tmp_path / "run").exists()


def _finished_run(config, workdir, metrics):
    workdir.mkdir()
    config_files.save(config, workdir / CONFIG_FILE)
    RunState(phase="trained", epochs_done=2, complete=True, metrics=metrics).save(workdir)


def test_a_finished_run_is_reported_with_its_metrics_and_not_trained_again(
    train_folder, tmp_path, capsys
):
    config = _config(train_folder, tmp_path)
    metrics = {"classes": ["cat", "dog", "fox"], "phase2": {"test": {"accuracy": 0.5}}}
    _finished_run(config, tmp_path / "run", metrics)
    before = _files(tmp_path / "run")
    assert train.run(config, tmp_path / "run") == metrics
    assert f"{tmp_path / 'run'} holds a complete run (--restart trains again)" in (
        capsys.readouterr().out
    )
    assert _files(tmp_path / "run") == before


def test_a_finished_run_with_another_config_is_refused(train_folder, tmp_path):
    _finished_run(_config(train_folder, tmp_path), tmp_path / "run", {"classes": []})
    before = _files(tmp_path / "run")
    changed = _config(train_folder, tmp_path, phase2__learning_rate=0.5)
    with pytest.raises(UserError) as raised:
        train.run(changed, tmp_path / "run")
    assert str(raised.value) == (
        f"{tmp_path / 'run'} holds a complete run trained with another config: "
        "phase2.learning_rate (0.0001 -> 0.5). Rerun with --restart to train again with this "
        "config (the finished run is moved aside), or use a new --workdir"
    )
    assert _files(tmp_path / "run") == before
