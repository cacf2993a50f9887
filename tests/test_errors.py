"""sft_tf/errors.py: which of TensorFlow's real file-system errors are failed writes (and the
path and reason the CLI prints), and the quiet exit when the reader of stdout has gone."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from sft_tf.errors import UserError, file_system_failure


def _raised(write) -> Exception:
    with pytest.raises(Exception) as raised:
        write()
    return raised.value


def test_a_write_under_a_file_is_a_failed_write_with_its_path_and_reason(tmp_path):
    """Op errors ("{{function_node ...}} PATH; REASON [Op:WriteFile]") and gfile errors
    ("PATH; REASON") both give the path and the OS's reason."""
    (tmp_path / "afile").write_text("x")
    target = str(tmp_path / "afile" / "out.txt")
    from_op = _raised(lambda: tf.io.write_file(target, "hi"))
    assert isinstance(from_op, tf.errors.OpError) and "[Op:WriteFile]" in from_op.message
    assert file_system_failure(from_op) == (target, os.strerror(20))  # ENOTDIR
    from_gfile = _raised(lambda: tf.io.gfile.GFile(target, "w").write("hi"))
    assert file_system_failure(from_gfile) == (target, "Not a directory")
    into_a_folder = _raised(lambda: tf.io.write_file(str(tmp_path), "hi"))
    assert file_system_failure(into_a_folder) == (str(tmp_path), "Is a directory")


def test_errors_that_are_not_failed_writes_are_left_alone(tmp_path):
    """A missing file read is not a write failure (a bug's traceback is what a report needs),
    nor is any non-TensorFlow exception, even one whose text looks like one."""
    missing = _raised(lambda: tf.io.read_file(str(tmp_path / "missing.txt")))
    assert isinstance(missing, tf.errors.NotFoundError)
    assert file_system_failure(missing) is None
    assert file_system_failure(ValueError(f"{tmp_path}; Not a directory")) is None
    assert file_system_failure(UserError("config.x; Permission denied")) is None


def test_a_checkpoint_written_under_a_file_is_a_failed_write(tmp_path):
    """TF reports creating a folder under a file as "PATH is not a directory", no "; REASON"."""
    (tmp_path / "afile").write_text("x")
    checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
    error = _raised(lambda: checkpoint.write(str(tmp_path / "afile" / "ckpt")))
    assert file_system_failure(error) == (str(tmp_path / "afile"), "Not a directory")


def test_stdout_closed_points_stdout_at_devnull_and_returns_sigpipes_status():
    """In a child process: what it prints afterwards goes nowhere, and it exits cleanly."""
    script = (
        "import os, sys\n"
        "from sft_tf.errors import stdout_closed\n"
        "status = stdout_closed()\n"
        "print('lost')\n"
        "sys.stderr.write(f\"{status} {os.path.realpath('/proc/self/fd/1')}\")\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == f"141 {os.path.realpath(os.devnull)}"
