"""Kill `sft-tf train` at any point, rerun the same command: it resumes and finishes once, with
the weights an uninterrupted run ends with, bit for bit."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.test_cli import sft_tf


def _args(image_folders, *extra):
    return [
        "train",
        f"--config={REPO / 'configs' / 'tiny.py'}",
        f"--config.data.train=folder:{image_folders['train']}",
        f"--config.data.test=folder:{image_folders['test']}",
        "--config.phase1.epochs=2",
        "--config.phase1.cache_features=off",
        "--config.phase2.epochs=2",
        "--config.runtime.checkpoint_every_steps=2",
        # Random augmentation and dropout: a resume must reproduce their draws too.
        "--config.data.augment=crop,flip",
        "--workdir=run",
        *extra,
    ]


def _state(cwd):
    try:
        return json.loads((cwd / "run" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


KILL_POINTS = {
    # name: predicate on (state, cwd) that says "kill now"
    "mid phase 1": lambda s, cwd: s and s["phase"] == "phase1" and s["mid_epoch_step"] > 0,
    "right after the phase switch": lambda s, cwd: (
        s and s.get("checkpoint_phase") == "phase1" and s["phase"] == "phase2"
    ),
    "mid phase 2": lambda s, cwd: (
        s and s.get("checkpoint_phase") == "phase2" and s["phase"] == "phase2"
    ),
    "during export": lambda s, cwd: any((cwd / "saved_models" / "tiny").glob(".staging-*/*.pb")),
}


def _kill_when(cwd, args, ready, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sft_tf", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    while not ready(_state(cwd), cwd):
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _final_digest(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("Final weights sha256")]
    return line.split()[-1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, image_folders):
    """The same run as the kill tests', never interrupted: its final weights and metrics."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    out = sft_tf(*_args(image_folders), cwd=cwd).stdout
    return _final_digest(out), json.loads((cwd / "run" / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_killed_run_resumes_and_finishes_once(point, tmp_path, image_folders, uninterrupted):
    args = _args(image_folders)
    _kill_when(tmp_path, args, KILL_POINTS[point])
    assert not (tmp_path / "run" / "metrics.json").exists()
    out = sft_tf(*args, cwd=tmp_path).stdout
    state = _state(tmp_path)
    assert state["complete"] and state["epochs_done"] == 4
    # Epoch accounting: one history entry per epoch of both phases, none repeated or skipped.
    assert len(state["history"]["loss"]) == 4
    if point != "during export":
        assert "Resuming" in out or point == "right after the phase switch"
    root = tmp_path / "saved_models" / "tiny"
    assert sorted(p.name for p in root.iterdir()) == ["1"]  # one version, no partial folder
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["export"] == "saved_models/tiny/1"
    # The resumed run trained exactly what the uninterrupted one did: the same batches, the
    # same augmentation and dropout draws, nothing twice. (Without the dropout state in the
    # checkpoint, a resume mid phase 1 ends with other weights: checked when this was written.)
    digest, reference = uninterrupted
    assert _final_digest(out) == digest
    for phase in ("phase1", "phase2"):
        assert metrics[phase]["test"] == reference[phase]["test"]
    if point == "mid phase 1":
        assert re.search(r"epoch 1: that epoch continues at step [35] of 6", out)


def test_resume_checks_config_then_finishes_and_reruns_are_no_ops(tmp_path, image_folders):
    # Also the one run here with TensorFlow's op determinism on (GPU kernels; CPU ones already
    # are): it must not get in the way of anything a run does.
    args = _args(image_folders, "--config.runtime.deterministic=true")
    _kill_when(tmp_path, args, KILL_POINTS["mid phase 2"])
    changed = sft_tf(*args, "--config.phase2.learning_rate=0.5", cwd=tmp_path, check=False)
    assert changed.returncode == 2
    assert "phase2.learning_rate (0.0001 -> 0.5)" in changed.stderr
    assert "--allow_config_change" in changed.stderr
    # Changing only where it is exported is fine; the run resumes in phase 2.
    out = sft_tf(*args, "--config.export.top_k=2", cwd=tmp_path).stdout
    assert "Resuming phase2" in out and "Phase 1 (head only" not in out
    assert "; deterministic ops" in out
    again = sft_tf(*args, cwd=tmp_path).stdout
    assert "holds a complete run" in again and "Epoch" not in again
    assert [p.name for p in (tmp_path / "saved_models" / "tiny").iterdir()] == ["1"]
    sft_tf(*args, "--restart", "--config.phase1.epochs=1", "--config.phase2.epochs=0", cwd=tmp_path)
    assert len(list(tmp_path.glob("run.old-*"))) == 1
    assert _state(tmp_path)["epochs_done"] == 1


def test_non_finite_loss_stops_names_the_step_and_skips_export(tmp_path, image_folders):
    args = _args(
        image_folders,
        "--config.phase1.optimizer=sgd",
        "--config.phase1.learning_rate=1e38",
    )
    result = sft_tf(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "sft-tf: error: phase1: the loss became" in result.stderr
    assert "at epoch 1, step" in result.stderr and "lower the learning rate" in result.stderr
    assert not (tmp_path / "saved_models").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_fields_added_by_a_newer_version_do_not_block_a_resume(tmp_path, image_folders):
    """An interrupted run's config.json from before a field existed still resumes."""
    from sft_tf import config_lib, train
    from tests.test_config_lib import _load

    config = _load(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    older = config_lib.to_dict(config)
    del older["data"]["class_weighting"], older["export"]["calibrate"]
    (tmp_path / "config.json").write_text(json.dumps(older))
    state = {"phase": "phase1", "epochs_done": 1, "mid_epoch_step": 0, "complete": False}
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert train._resume_point(tmp_path, config, False, False)["epochs_done"] == 1
    # A new field set away from its default is a change like any other.
    config.data.class_weighting = "balanced"
    with pytest.raises(train.UserError, match=r"data.class_weighting \('none' -> 'balanced'\)"):
        train._resume_point(tmp_path, config, False, False)
