"""RunState and resume_point: which checkpoint a resume restores, and when it refuses."""

import json
import shutil

import keras
import numpy as np
import pytest

from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.lock import LOCK_FILE, WorkdirLock
from sft_tf.training.checkpoints import RunCheckpoints
from sft_tf.training.state import (
    RunState,
    check_resume,
    move_aside,
    resume_point,
    write_history_csv,
)
from tests.helpers import REPO


def _model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.1), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _record(epochs_done: int) -> RunState:
    return RunState(phase="phase1", epochs_done=epochs_done)


def _three_saves(workdir) -> list[np.ndarray]:
    """Saves after 1, 2 and 3 epochs with other weights each time; returns those kernels."""
    model = _model()
    saver = RunCheckpoints(workdir, model)
    saver.track(model)
    kernels = []
    for epoch in (1, 2, 3):
        model.layers[-1].kernel.assign(np.full((4, 3), epoch, np.float32))
        kernels.append(model.layers[-1].kernel.numpy())
        saver.save(_record(epoch))
    return kernels


def _restored_kernel(workdir, name: str) -> np.ndarray:
    model = _model(seed=1)
    saver = RunCheckpoints(workdir, model)
    saver.track(model)
    saver.restore(name)
    return model.layers[-1].kernel.numpy()


def test_saves_keep_two_each_with_its_record_and_state_names_the_newest(tmp_path):
    kernels = _three_saves(tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert [n for n in names if n.endswith(".index")] == ["ckpt-2.index", "ckpt-3.index"]
    assert (
        json.loads((tmp_path / "checkpoints" / "ckpt-2.state.json").read_text())["epochs_done"] == 2
    )
    state = resume_point(tmp_path)
    assert state.checkpoint == "ckpt-3" and state.epochs_done == 3
    np.testing.assert_array_equal(_restored_kernel(tmp_path, "ckpt-3"), kernels[2])


def test_no_run_is_a_fresh_start(tmp_path):
    assert resume_point(tmp_path) is None
    (tmp_path / "config.json").write_text("{}")  # a run stopped before its first checkpoint
    assert resume_point(tmp_path) is None


def _delete_newest(workdir):
    for path in (workdir / "checkpoints").glob("ckpt-3.*"):
        path.unlink()


def _corrupt_newest(workdir):
    data = workdir / "checkpoints" / "ckpt-3.data-00000-of-00001"
    data.write_bytes(bytes(len(data.read_bytes())))  # same size, other bytes


@pytest.mark.parametrize("damage", [_delete_newest, _corrupt_newest])
def test_an_unusable_newest_checkpoint_falls_back_to_the_older_and_its_record(
    damage, tmp_path, capsys
):
    kernels = _three_saves(tmp_path)
    damage(tmp_path)
    state = resume_point(tmp_path)
    assert state.checkpoint == "ckpt-2" and state.epochs_done == 2  # rewound with it
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and "checkpoint ckpt-3" in said[0] and "ckpt-2 instead" in said[0]
    np.testing.assert_array_equal(_restored_kernel(tmp_path, "ckpt-2"), kernels[1])


@pytest.mark.parametrize("text", ['{"phase": "pha', "[]", ""])
def test_a_broken_state_json_resumes_from_the_newest_record(text, tmp_path, capsys):
    _three_saves(tmp_path)
    (tmp_path / "state.json").write_text(text)
    state = resume_point(tmp_path)
    assert state.checkpoint == "ckpt-3" and state.epochs_done == 3
    assert "state.json" in capsys.readouterr().out


def test_no_usable_checkpoint_stops_with_one_line_naming_the_choices(tmp_path):
    _three_saves(tmp_path)
    for path in (tmp_path / "checkpoints").glob("*.data-*"):
        path.write_bytes(b"x")
    with pytest.raises(UserError) as raised:
        resume_point(tmp_path)
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "ckpt-3" in message and "ckpt-2" in message
    assert "--restart" in message and "new --workdir" in message


def test_a_complete_run_needs_no_checkpoint(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"phase": "trained", "complete": True}))
    assert resume_point(tmp_path).complete


def test_state_from_before_checkpoints_were_named_uses_the_managers_index(tmp_path):
    """Runs written by earlier sft_tf versions: tf.train.CheckpointManager's files, no record."""
    import tensorflow as tf

    model = _model()
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(weights=list(model.weights)), str(tmp_path / "checkpoints"), 2
    )
    manager.save()
    # state.json as sft_tf wrote it then: no "checkpoint", no "checkpoint_phase".
    old = {"phase": "phase2", "epochs_done": 1, "mid_epoch_step": 2, "history": {}, "metrics": {}}
    (tmp_path / "state.json").write_text(json.dumps({**old, "complete": False}))
    state = resume_point(tmp_path)
    assert state.checkpoint == "ckpt-1" and state.checkpoint_phase == "phase2"
    (tmp_path / "checkpoints" / "checkpoint").write_text("garbage")
    with pytest.raises(UserError, match="cannot resume"):
        resume_point(tmp_path)


def test_run_state_round_trips_and_ignores_fields_it_does_not_know():
    state = RunState(phase="phase2", epochs_done=3, mid_epoch_step=4, checkpoint="ckpt-9")
    state.record_epoch({"loss": 0.5})
    assert RunState.from_dict(state.to_dict()) == state
    assert RunState.from_dict({**state.to_dict(), "added_later": 1}) == state
    with pytest.raises(ValueError, match="not a run record"):
        RunState.from_dict({"epochs_done": 1})


def test_position_says_where_a_phase_starts():
    started = RunState(phase="phase2", epochs_done=3, mid_epoch_step=4, checkpoint="ckpt-9")
    assert started.position("phase2", first_epoch=2) == (3, 4)  # mid-way: where it stopped
    assert started.position("phase1", first_epoch=0) == (0, 0)  # another phase: its start
    assert RunState(phase="phase2").position("phase2", 2) == (2, 0)  # nothing saved yet


def test_history_csv_has_one_row_per_epoch(tmp_path):
    path = tmp_path / "history.csv"
    history = {"loss": [0.5, 0.25], "accuracy": [0.75, 1.0], "val_loss": [0.5]}
    write_history_csv(path, history, [(1, "phase1"), (2, "phase2")])
    assert path.read_text().splitlines() == [
        "epoch,phase,accuracy,loss,val_loss",
        "1,phase1,0.75,0.5,0.5",
        "2,phase2,1.0,0.25,NA",
    ]


def test_epochs_are_numbered_over_the_run_from_one():
    history = {"loss": [0.9, 0.8, 0.7, 0.6]}
    during_phase1 = RunState(phase="phase1", history={"loss": [0.9, 0.8]})
    assert during_phase1.epoch_rows() == [(1, "phase1"), (2, "phase1")]
    # Phase 1 of 3 epochs stopped early after 2: phase 2 still starts at epoch 4, as printed.
    state = RunState(phase="phase2", history=history)
    state.metrics["phase1"] = {"epochs": 3, "epochs_run": 2}
    assert state.epoch_rows() == [(1, "phase1"), (2, "phase1"), (4, "phase2"), (5, "phase2")]
    state.metrics["phase1"] = {"epochs": 2}  # a record from before epochs_run
    assert state.epoch_rows()[2] == (3, "phase2")
    no_phase1 = RunState(phase="trained", history=history)  # phase1.epochs=0
    assert no_phase1.epoch_rows() == [(i, "phase2") for i in (1, 2, 3, 4)]


LEGACY_RUN = REPO / "tests" / "fixtures" / "legacy_run_v0" / "run"


@pytest.fixture
def legacy_run(tmp_path):
    """The committed record of a run an earlier sft_tf left after a kill in phase 2, and its
    config. Its checkpoint's bytes are not committed: a small readable one stands in (only its
    readability matters here)."""
    import tensorflow as tf

    shutil.copytree(LEGACY_RUN, tmp_path / "run")
    stand_in = tf.train.Checkpoint(weights=[tf.Variable([1.0, 2.0])])
    stand_in.write(str(tmp_path / "run" / "checkpoints" / "ckpt-1"))
    config_json = tmp_path / "run" / "config.json"
    config_json.write_text(config_json.read_text().replace("@IMAGES@", "/data"))
    return tmp_path / "run", config_files.load(config_json)


def test_an_interrupted_run_with_another_config_stops_unless_allowed(legacy_run):
    workdir, config = legacy_run
    assert check_resume(workdir, config, allow_config_change=False).checkpoint == "ckpt-1"
    config.export.top_k = 2  # where it is exported does not change what is trained
    assert check_resume(workdir, config, allow_config_change=False) is not None
    # Op determinism changes the weights a run ends with (on CPU too): not a free change.
    config.runtime.deterministic = True
    with pytest.raises(UserError, match=r"runtime\.deterministic \(False -> True\)"):
        check_resume(workdir, config, allow_config_change=False)
    config.runtime.deterministic = False
    config.phase2.learning_rate = 0.5
    with pytest.raises(UserError) as raised:
        check_resume(workdir, config, allow_config_change=False)
    assert "phase2.learning_rate (0.0001 -> 0.5)" in str(raised.value)
    assert "--allow_config_change" in str(raised.value) and "--restart" in str(raised.value)
    assert check_resume(workdir, config, allow_config_change=True).epochs_done == 1


def test_a_finished_run_with_another_config_stops_even_if_allowed(legacy_run):
    workdir, config = legacy_run
    record = json.loads((workdir / "state.json").read_text())
    (workdir / "state.json").write_text(json.dumps({**record, "complete": True}))
    assert check_resume(workdir, config, allow_config_change=False).complete
    config.phase2.epochs = 3
    with pytest.raises(UserError, match=r"holds a complete run trained with another config: "):
        check_resume(workdir, config, allow_config_change=True)


def test_restart_moves_the_run_aside_and_keeps_the_lock(tmp_path, legacy_run):
    workdir, _ = legacy_run
    lock = WorkdirLock()
    lock.acquire(workdir)
    try:
        move_aside(workdir, lock)
        (aside,) = tmp_path.glob("run.old-*")
        assert (aside / "state.json").is_file() and not (aside / LOCK_FILE).exists()
        assert [p.name for p in workdir.iterdir()] == [LOCK_FILE] and lock.held
    finally:
        lock.release()
