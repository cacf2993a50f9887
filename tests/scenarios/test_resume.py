"""Kill `sft-tf train` at any point, rerun the same command: it resumes and finishes once, with
the weights an uninterrupted run ends with, bit for bit."""

import json
import re
import shutil
import signal
import subprocess
import sys

import pytest

from sft_tf.config import files as config_files
from tests.helpers import (
    KILL_POINTS,
    REPO,
    final_digest,
    kill_when,
    run_state,
    sft_tf,
    snapshot,
    start_cli,
    tiny_train_args,
    wait_for,
)


def _args(image_folders, *extra):
    return tiny_train_args(
        image_folders["train"],
        image_folders["test"],
        "--config.phase1.epochs=2",
        "--config.phase1.cache_features=off",
        "--config.phase2.epochs=2",
        "--config.runtime.checkpoint_every_steps=2",
        # Random augmentation and dropout: a resume must reproduce their draws too.
        "--config.data.augment=crop,flip",
        "--workdir=run",
        *extra,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, image_folders):
    """The same run as the kill tests', never interrupted: its final weights and metrics
    (not exported: export.* does not change what is trained)."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    out = sft_tf(*_args(image_folders, "--config.export.dir="), cwd=cwd).stdout
    return final_digest(out), json.loads((cwd / "run" / "metrics.json").read_text())


# Each kill point in turn, in one run: killed mid phase 1, resumed and killed right after the
# phase switch, resumed and killed mid phase 2, resumed and killed during the export, resumed.
KILL_CHAIN = ("mid phase 1", "right after the phase switch", "mid phase 2", "during export")


@pytest.mark.slow
def test_killed_at_every_point_resumes_and_finishes_once(tmp_path, image_folders, uninterrupted):
    args = _args(image_folders)
    printed = [kill_when(tmp_path, args, KILL_POINTS[point]) for point in KILL_CHAIN]
    assert not (tmp_path / "run" / "metrics.json").exists()
    out = sft_tf(*args, cwd=tmp_path).stdout
    # What each resumed process said: a mid-epoch checkpoint continues that epoch's batches.
    assert re.search(r"epoch 1: that epoch continues at step [35] of 6", printed[1])
    assert "Resuming phase2 after 2 finished epoch(s)" in printed[2]
    assert "Resuming phase2" in printed[3] and "Phase 1 (head only" not in printed[3]
    state = run_state(tmp_path)
    assert state["complete"] and state["epochs_done"] == 4
    # Epoch accounting: one history entry per epoch of both phases, none repeated or skipped.
    assert len(state["history"]["loss"]) == 4
    root = tmp_path / "saved_models" / "tiny"
    assert sorted(p.name for p in root.iterdir()) == ["1"]  # one version, no partial folder
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["export"] == "saved_models/tiny/1"
    # The resumed run trained exactly what the uninterrupted one did: the same batches, the
    # same augmentation and dropout draws, nothing twice. (Without the dropout state in the
    # checkpoint, a resume mid phase 1 ends with other weights: checked when this was written.)
    digest, reference = uninterrupted
    assert final_digest(out) == digest
    for phase in ("phase1", "phase2"):
        assert metrics[phase]["test"] == reference[phase]["test"]


def _phase2_step(step, epochs_done=2):
    """Kill point: phase 2 checkpointed at `step` of the epoch after `epochs_done` (default:
    phase 2's first)."""
    return lambda s, cwd: (
        s
        and s.get("checkpoint_phase") == "phase2"
        and s["epochs_done"] == epochs_done
        and s["mid_epoch_step"] == step
    )


@pytest.fixture(scope="module")
def killed_in_phase2(tmp_path_factory, image_folders):
    """A run SIGKILLed in phase 2 with two phase-2 checkpoints kept (steps 2 and 4)."""
    cwd = tmp_path_factory.mktemp("killed")
    kill_when(cwd, _args(image_folders), _phase2_step(4))
    return cwd


@pytest.mark.slow  # the same decisions run in-process in tests/training/test_state.py
def test_resume_checks_config_then_finishes_and_reruns_are_no_ops(tmp_path, image_folders):
    # Also the one run here with TensorFlow's op determinism on (GPU kernels; CPU ones already
    # are): it must not get in the way of anything a run does. (It is another run: the
    # deterministic input pipeline ends with other weights than the default one.)
    args = _args(image_folders, "--config.runtime.deterministic=true")
    kill_when(tmp_path, args, KILL_POINTS["mid phase 2"])
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
    # A finished run asked for more epochs says it will not ignore that.
    more = sft_tf(*args, "--config.phase2.epochs=3", cwd=tmp_path, check=False)
    assert more.returncode == 2 and more.stderr.count("\n") == 1
    assert "holds a complete run trained with another config: phase2.epochs (2 -> 3)" in more.stderr
    assert "--restart" in more.stderr
    assert [p.name for p in (tmp_path / "saved_models" / "tiny").iterdir()] == ["1"]
    restart = ("--restart", "--config.phase1.epochs=1", "--config.phase2.epochs=0")
    sft_tf(*args, *restart, "--config.export.dir=", cwd=tmp_path)
    assert len(list(tmp_path.glob("run.old-*"))) == 1
    assert run_state(tmp_path)["epochs_done"] == 1


@pytest.mark.slow
def test_non_finite_loss_stops_and_the_advised_command_finishes(tmp_path, image_folders):
    """A phase 2 rate so high that the loss is NaN at its third step (the warm-up's second
    update, just after a checkpoint); measured on this tiny run: 2e31 diverges, 1e31 trains
    to a finite loss, so 5e31 and the advised tenth have room on both sides."""
    args = tiny_train_args(
        image_folders["train"],
        image_folders["test"],
        "--config.phase2.optimizer=sgd",
        "--config.phase2.momentum=0",
        "--config.phase2.epochs=3",
        "--config.phase2.warmup_epochs=2",
        "--config.phase2.learning_rate=5e31",
        "--config.runtime.checkpoint_every_steps=2",
        "--workdir=run",
    )
    result = sft_tf(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert line.startswith(
        "sft-tf: error: phase2: the loss became nan at epoch 2, step 3 and nothing was "
        "exported; phase2.learning_rate=5e+31 is likely too high: rerun the same command with "
        "--config.phase2.learning_rate=5e+30 --restart to train again from the start"
    ), line
    assert not (tmp_path / "saved_models").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()
    advised = re.search(r"rerun the same command with (.+?) to train again", line).group(1)
    # Why not a resume: the checkpoint of step 2 holds the weights step 3's NaN came from, so
    # resuming from it diverges again at the same step even at the default rate.
    resume = ("--config.phase2.learning_rate=1e-4", "--allow_config_change")
    resumed = sft_tf(*args, *resume, cwd=tmp_path, check=False)
    assert "Resuming phase2 after 1 finished epoch(s) from ckpt-" in resumed.stdout
    assert resumed.returncode == 2, resumed.stderr
    assert "phase2: the loss became nan at epoch 2, step 3 " in resumed.stderr
    done = sft_tf(*args, *advised.split(), cwd=tmp_path)
    assert "--restart: moved the earlier run" in done.stdout
    assert (tmp_path / "saved_models" / "tiny" / "1" / "saved_model.pb").is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["phase2"]


def test_fields_added_by_a_newer_version_do_not_block_a_resume(tmp_path, image_folders):
    """An interrupted run's config.json from before a field existed still resumes."""
    from sft_tf.training import state as state_lib
    from tests.helpers import load_config

    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    older = config_files.to_dict(config)
    del older["data"]["class_weighting"], older["export"]["calibrate"]
    (tmp_path / "config.json").write_text(json.dumps(older))
    assert state_lib.config_changes(tmp_path, config) == []
    # A new field set away from its default is a change like any other.
    config.data.class_weighting = "balanced"
    assert state_lib.config_changes(tmp_path, config) == [
        "data.class_weighting ('none' -> 'balanced')"
    ]


def _newest(run):
    return json.loads((run / "state.json").read_text())["checkpoint"]


def _delete_newest(run):
    for path in (run / "checkpoints").glob(f"{_newest(run)}.*"):
        path.unlink()


def _corrupt_newest(run):
    data = run / "checkpoints" / f"{_newest(run)}.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    middle = slice(len(raw) // 2, len(raw) // 2 + 64)
    raw[middle] = bytes(b ^ 0xFF for b in raw[middle])  # flipped: zeros over zeros change nothing
    data.write_bytes(bytes(raw))


def _truncate_state(run):
    (run / "state.json").write_text('{"phase": "pha')


def _garbage_index(run):
    (run / "checkpoints" / "checkpoint").write_text("garbage")


DAMAGE = {
    "newest checkpoint deleted": (_delete_newest, "missing. Resuming from checkpoint"),
    "newest checkpoint corrupted": (_corrupt_newest, "Checksum does not match"),
    "state.json truncated": (_truncate_state, "state.json cannot be read"),
    "checkpoint index garbage": (_garbage_index, ""),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_resume_state_falls_back_and_ends_as_uninterrupted(
    damage, tmp_path, image_folders, killed_in_phase2, uninterrupted
):
    shutil.copytree(killed_in_phase2, tmp_path, dirs_exist_ok=True)
    spoil, warning = DAMAGE[damage]
    spoil(tmp_path / "run")
    # No export: what is checked is the training (export.* may change on a resume).
    out = sft_tf(*_args(image_folders, "--config.export.dir="), cwd=tmp_path).stdout
    assert warning in out
    assert "Resuming phase2 after 2 finished epoch(s)" in out  # never a restarted phase
    digest, _ = uninterrupted
    assert final_digest(out) == digest
    state = run_state(tmp_path)
    assert state["complete"] and len(state["history"]["loss"]) == 4
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2", "3", "4"]


@pytest.mark.slow
def test_no_readable_checkpoint_stops_and_keeps_the_run(tmp_path, image_folders, killed_in_phase2):
    shutil.copytree(killed_in_phase2, tmp_path, dirs_exist_ok=True)
    checkpoints = tmp_path / "run" / "checkpoints"
    for path in checkpoints.glob("*.data-*"):
        path.write_bytes(b"x")
    # The kill may land between a checkpoint's write and the pruning of the oldest: 2 or 3 kept.
    before = snapshot(checkpoints)
    result = sft_tf(*_args(image_folders), cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "cannot resume the run in run:" in result.stderr and "--restart" in result.stderr
    assert not (tmp_path / "saved_models").exists()
    assert snapshot(checkpoints) == before
    assert len(list(checkpoints.glob("*.index"))) >= 2


HOLD_LOCK = (
    "import sys, time\n"
    "from sft_tf.lock import WorkdirLock\n"
    "lock = WorkdirLock()\n"  # kept: the lock lives as long as its open file
    "lock.acquire(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.mark.slow
def test_a_locked_workdir_is_refused_then_ctrl_c_stops_in_one_line_and_resumes(
    tmp_path, image_folders, killed_in_phase2, uninterrupted
):
    shutil.copytree(killed_in_phase2, tmp_path, dirs_exist_ok=True)
    args = _args(image_folders)
    # Another process holds the workdir (a stand-in that cannot finish first on a slow host).
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    before = snapshot(tmp_path / "run")
    refused = sft_tf(*args, cwd=tmp_path, check=False)
    holder.kill()
    holder.wait()
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"run is in use by another sft-tf process (PID {holder.pid})" in refused.stderr
    assert "Data:" not in refused.stdout  # refused before listing or scanning anything
    assert snapshot(tmp_path / "run") == before  # nothing written
    # Ctrl-C mid phase 2 (the resumed run's second phase-2 epoch): one line, exit 130, and the
    # rerun resumes to the same weights.
    first = start_cli(tmp_path, args)
    wait_for(first, tmp_path, _phase2_step(2, epochs_done=3))
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130
    assert re.fullmatch(
        r"sft-tf: interrupted in phase2, (epoch 4, step \d|after epoch 4); rerun the same "
        r"command to resume\n",
        err,
    ), err
    out = sft_tf(*args, "--config.export.dir=", cwd=tmp_path).stdout  # the training is checked
    assert "Resuming phase2" in out
    assert final_digest(out) == uninterrupted[0]
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 5


def _legacy_args(image_folders):
    """The command the committed legacy run was made with (tests/fixtures/legacy_run_v0)."""
    return tiny_train_args(
        image_folders["train"],
        image_folders["test"],
        "--config.phase1.epochs=1",
        "--config.phase1.cache_features=off",
        "--config.phase2.epochs=2",
        "--config.runtime.checkpoint_every_steps=2",
        "--workdir=run",
    )


def _where_the_legacy_run_was_killed(s, cwd) -> bool:
    """Phase 2, its first epoch, the checkpoint after step 2."""
    where = ("phase2", "phase2", 1, 2)
    keys = ("phase", "checkpoint_phase", "epochs_done", "mid_epoch_step")
    return bool(s) and tuple(s[k] for k in keys) == where


@pytest.mark.slow  # two runs: one to remake the old checkpoint's bytes, one to resume
def test_a_run_killed_by_an_earlier_version_resumes_and_finishes(tmp_path, image_folders):
    """The committed files are the earlier version's own (state.json without a checkpoint
    name, CheckpointManager's index); the checkpoint's 3.6 MB of weights are not committed but
    remade: this version trains bit for bit as that one did, so a run killed at the same
    step (phase 2, epoch 2, step 2) holds the same values, written under the old name."""
    args = _legacy_args(image_folders)
    remake = tmp_path / "remake"
    remake.mkdir()
    kill_when(remake, args, _where_the_legacy_run_was_killed)
    newest = run_state(remake)["checkpoint"]
    shutil.copytree(REPO / "tests" / "fixtures" / "legacy_run_v0" / "run", tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    for path in (remake / "run" / "checkpoints").glob(f"{newest}.*"):
        if not path.name.endswith(".state.json"):  # the old layout kept no record beside it
            shutil.copy(path, checkpoints / path.name.replace(newest, "ckpt-1"))
    config = tmp_path / "run" / "config.json"
    config.write_text(config.read_text().replace("@IMAGES@", str(image_folders["train"].parent)))
    out = sft_tf(*args, cwd=tmp_path).stdout
    assert "Resuming phase2 after 1 finished epoch(s) from ckpt-1" in out
    assert "continues at step 3 of 6" in out and "Phase 1 (head only" not in out
    state = run_state(tmp_path)
    assert state["complete"] and state["epochs_done"] == 3
    assert len(state["history"]["loss"]) == 3
    # The old run's phase-1 results were kept, and its checkpoints are numbered on from there.
    assert state["metrics"]["phase1"]["test"]["examples"] == 18
    assert sorted(p.name for p in (tmp_path / "saved_models" / "tiny").iterdir()) == ["1"]
