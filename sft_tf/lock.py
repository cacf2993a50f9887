"""One process per workdir: an exclusive OS lock on `<workdir>/.lock`.

Two runs writing one workdir corrupt it (each resumes from the other's checkpoints and both
append to its files). `flock` locks belong to the open file, so the kernel releases them when
the process ends in any way, SIGKILL included: a killed run never blocks its own rerun.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from sft_tf.errors import UserError

LOCK_FILE = ".lock"


class WorkdirLock:
    """Held from `acquire` until `release` (callers release in a `finally`: an exception's
    traceback would otherwise keep the open file, and the lock, alive in this process).

    The holder writes its PID into the file, so a refused process can name it.
    """

    def __init__(self):
        self.workdir: Path | None = None
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self, workdir: str | Path, create: bool = True) -> bool:
        """Takes the lock on `workdir`; with create=False only if the workdir already exists.

        Returns:
          Whether the lock is held now.

        Raises:
          UserError: another process holds it (nothing is written then).
        """
        if self._file is not None:
            return True
        self.workdir = Path(workdir)
        if not self.workdir.is_dir():
            if not create:
                return False
            self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / LOCK_FILE
        # "a+" creates the file if needed and never changes an existing one before we hold it.
        handle = open(path, "a+")  # noqa: SIM115  (held open while the lock is)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(
                f"{self.workdir} is in use by another sft-tf process (PID {holder}); wait for "
                "it to finish or stop it, or use another --workdir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the lock
            self._file = None
