"""The one exception type the CLI turns into a one-line message and a non-zero exit, and the
file-system failures it reports by path."""

import errno
import os
import re
import sys


class UserError(Exception):
    """Bad input: a config field, a dataset, a path. The message names it and the fix."""


# What an OS reports when a write fails for lack of room or rights, as TensorFlow quotes it.
_WRITE_FAILURES = frozenset(
    os.strerror(code)
    for code in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.ENOTDIR,
        errno.EISDIR,
    )
)


def stdout_closed() -> int:
    """The exit status when whatever read sft-tf's output stopped reading (`... | head`): no
    message, as for any Unix tool. Standard output is pointed at /dev/null so that Python's
    flush at exit does not fail on the closed pipe again; 141 is the status a shell reports
    for a writer ended by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def file_system_failure(error: Exception) -> tuple[str, str] | None:
    """(path, reason) when `error` is one of TensorFlow's file-system write failures, else None.

    TensorFlow's file system (checkpoints, SavedModels, gs://) reports disk-full and
    permission errors as its own errors, "PATH; Permission denied", not as OSError.
    """
    import tensorflow as tf

    if not isinstance(error, tf.errors.OpError):
        return None
    # "{{function_node ...}} PATH; REASON [Op:SaveV2]" from ops, "PATH; REASON" from gfile.
    match = re.fullmatch(r"(?:\{\{.*?\}\}\s*)?(.+); ([^;]+?)(?:\s*\[Op:\w+\])?", error.message)
    if match is not None and match.group(2) in _WRITE_FAILURES:
        return match.group(1), match.group(2)
    # Creating a folder under a file: "PATH is not a directory", with no "; REASON".
    match = re.fullmatch(r"(?:\{\{.*?\}\}\s*)?(.+) is not a directory", error.message)
    if match is not None:
        return match.group(1), os.strerror(errno.ENOTDIR)
    return None
