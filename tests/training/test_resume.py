"""resume_point and check_resume: which checkpoint a resume restores, and when it refuses."""

import json

import numpy as np
import pytest

from sft_tf.errors import UserError
from sft_tf.training.resume import check_resume, resume_point
from tests.helpers import checkpoint_model, legacy_run_copy, restored_kernel, three_saves


@pytest.fixture
def legacy_run(tmp_path):
    return legacy_run_copy(tmp_path)


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
    kernels = three_saves(tmp_path)
    damage(tmp_path)
    state = resume_point(tmp_path)
    assert state.checkpoint == "ckpt-2" and state.epochs_done == 2  # rewound with it
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and "checkpoint ckpt-3" in said[0] and "ckpt-2 instead" in said[0]
    np.testing.assert_array_equal(restored_kernel(tmp_path, "ckpt-2"), kernels[1])


@pytest.mark.parametrize("text", ['{"phase": "pha', "[]", ""])
def test_a_broken_state_json_resumes_from_the_newest_record(text, tmp_path, capsys):
    three_saves(tmp_path)
    (tmp_path / "state.json").write_text(text)
    state = resume_point(tmp_path)
    assert state.checkpoint == "ckpt-3" and state.epochs_done == 3
    assert "state.json" in capsys.readouterr().out


def test_no_usable_checkpoint_stops_with_one_line_naming_the_choices(tmp_path):
    three_saves(tmp_path)
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

    model = checkpoint_model()
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
