"""RunState: the record's round trip, where a phase starts, history.csv; --restart."""

import dataclasses

import pytest

from sft_tf.lock import LOCK_FILE, WorkdirLock
from sft_tf.training.state import RunState, move_aside, write_history_csv
from tests.helpers import legacy_run_copy


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


def test_restart_moves_the_run_aside_and_keeps_the_lock(tmp_path):
    workdir, _ = legacy_run_copy(tmp_path)
    lock = WorkdirLock()
    lock.acquire(workdir)
    try:
        move_aside(workdir, lock)
        (aside,) = tmp_path.glob("run.old-*")
        assert (aside / "state.json").is_file() and not (aside / LOCK_FILE).exists()
        assert [p.name for p in workdir.iterdir()] == [LOCK_FILE] and lock.held
    finally:
        lock.release()


def test_transitions_move_the_record_and_the_start_snapshot_stays():
    state = RunState()
    start = state.snapshot()
    state.in_phase("phase1", epochs_done=1, step=3)
    state.record_epoch({"loss": 0.5})
    state.finish_phase("phase1", {"epochs": 2, "test": None}, epochs_done=2)
    assert (state.phase, state.checkpoint_phase, state.epochs_done) == ("phase2", "phase1", 2)
    assert state.mid_epoch_step == 0 and state.metrics["phase1"]["epochs"] == 2
    assert not state.restores_optimizer()  # phase 2 compiles its own optimizer
    state.at_checkpoint("ckpt-4")
    assert state.warn("flat loss") and not state.warn("flat loss")
    state.finish_phase("phase2", {"epochs": 1}, epochs_done=3)
    assert (state.phase, state.checkpoint_phase, state.epochs_done) == ("trained", "trained", 3)
    state.mark_complete(state.metrics)
    assert state.complete and state.metrics["warnings"] == ["flat loss"]
    # Where this process began is unchanged, and cannot be changed.
    assert (start.phase, start.epochs_done, start.checkpoint) == ("phase1", 0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        start.phase = "phase2"
    assert start.position("phase1", first_epoch=0) == (0, 0)
    assert RunState.from_dict(state.to_dict()) == state  # state.json holds the same fields
