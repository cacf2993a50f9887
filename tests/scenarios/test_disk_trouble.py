"""A checkpoint or export that cannot be written: one-line error, non-zero exit, nothing lost.

The folders are made read-only with chmod. Root ignores file modes, so when the suite runs as
root the `sft-tf` subprocess first drops the two capabilities that let it (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH) from its bounding set: after exec, root is held to the modes like anyone.
"""

import ctypes
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    KILL_POINTS,
    kill_when,
    make_image_folder,
    sft_tf,
    snapshot,
    tiny_train_args,
)

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_capabilities() -> None:
    """preexec_fn: the child and what it execs cannot bypass file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _set_writable(folder: Path, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            mode = path.stat().st_mode
            path.chmod(mode | stat.S_IWUSR if writable else mode & ~0o222)


def _sft_tf_held_to_modes(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`sft-tf ARGS` unable to write where the file modes say it may not, even as root."""
    return subprocess.run(
        [sys.executable, "-m", "sft_tf", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        preexec_fn=_drop_file_capabilities if os.geteuid() == 0 else None,
    )


def _can_drop_capabilities() -> bool:
    if os.geteuid() != 0:
        return True  # not needed
    try:
        subprocess.run(["true"], preexec_fn=_drop_file_capabilities, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.fixture
def base(tmp_path):
    if not _can_drop_capabilities():
        pytest.skip("running as root without CAP_SETPCAP: root cannot be held to file modes")
    make_image_folder(tmp_path / "data" / "train", per_class=16, seed=0)
    make_image_folder(tmp_path / "data" / "test", per_class=6, seed=1)
    yield tmp_path
    _set_writable(tmp_path, True)  # so pytest can delete it


def _train_args(base: Path, phase2_epochs: int = 2) -> list[str]:
    return tiny_train_args(
        base / "data" / "train",
        base / "data" / "test",
        "--config.phase1.epochs=2",
        "--config.phase1.cache_features=off",
        f"--config.phase2.epochs={phase2_epochs}",
        "--config.runtime.checkpoint_every_steps=2",
        "--workdir=run",
    )


@pytest.mark.slow
def test_export_into_a_read_only_folder_fails_and_keeps_the_old_version(base):
    sft_tf(*_train_args(base, phase2_epochs=0), cwd=base)
    versions = base / "saved_models" / "tiny"
    before = snapshot(versions)
    assert sorted(p.name for p in versions.iterdir()) == ["1"]
    # The export root stays writable (the up-front check passes); its model folder does not.
    _set_writable(versions, False)

    result = _sft_tf_held_to_modes(["export", "--workdir=run"], cwd=base)

    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("sft-tf: error: could not write ")
    assert str(versions) in error or "saved_models/tiny" in error
    assert "Permission denied" in error
    assert snapshot(versions) == before
    assert sorted(p.name for p in versions.iterdir()) == ["1"]


@pytest.mark.slow
def test_checkpoint_into_a_read_only_folder_fails_and_keeps_the_last_one(base):
    args = _train_args(base)
    kill_when(base, args, KILL_POINTS["mid phase 2"])
    checkpoints = base / "run" / "checkpoints"
    _set_writable(checkpoints, False)
    before = snapshot(checkpoints)

    result = _sft_tf_held_to_modes(args, cwd=base)

    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("sft-tf: error: could not write "), error
    assert "checkpoints" in error and "Permission denied" in error
    assert snapshot(checkpoints) == before
    assert not (base / "saved_models").exists()
    # Writable again, the same command resumes from that checkpoint and finishes.
    _set_writable(checkpoints, True)
    # (No export: the export may change on a resume, and only the training is checked here.)
    finished = _sft_tf_held_to_modes([*args, "--config.export.dir="], cwd=base)
    assert finished.returncode == 0, finished.stderr
    assert "Resuming phase2" in finished.stdout and "Final weights sha256" in finished.stdout
