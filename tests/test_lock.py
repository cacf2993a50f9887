"""One process per workdir: a second one is refused by PID; a killed holder blocks nothing."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sft_tf.errors import UserError
from sft_tf.lock import LOCK_FILE, WorkdirLock

HOLD = (
    "import sys, time\n"
    "from sft_tf.lock import WorkdirLock\n"
    "lock = WorkdirLock()\n"
    "lock.acquire(sys.argv[1])\n"
    "print('held', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock on tmp_path / 'run'."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_naming_the_holder_and_writes_nothing(tmp_path, holder):
    workdir = tmp_path / "run"
    before = (workdir / LOCK_FILE).read_bytes()
    with pytest.raises(UserError, match=rf"{workdir} is in use by .*\(PID {holder.pid}\)"):
        WorkdirLock().acquire(workdir)
    assert (workdir / LOCK_FILE).read_bytes() == before
    assert [p.name for p in workdir.iterdir()] == [LOCK_FILE]


def test_a_killed_holder_leaves_the_workdir_free(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = WorkdirLock()
    assert lock.acquire(tmp_path / "run")
    assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()
    # Released: the next one (another open file, even in this process) gets it.
    assert WorkdirLock().acquire(tmp_path / "run")


def test_without_create_a_missing_workdir_stays_missing(tmp_path):
    lock = WorkdirLock()
    assert not lock.acquire(tmp_path / "new", create=False)
    assert not (tmp_path / "new").exists()
    started = time.time()
    assert lock.acquire(tmp_path / "new") and time.time() - started < 5
    lock.release()
