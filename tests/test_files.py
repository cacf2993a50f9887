"""sft_tf/files.py: the atomic writers. A write that succeeds replaces the file whole and leaves
no temp file; a write that fails (here: the file-size limit, which fails a write as a full disk
does, with a real OSError mid-write) leaves the old file as it was."""

import json
import resource
import signal

import keras
import numpy as np
import pytest

from sft_tf import files

LIMIT = 100_000  # bytes any process may write into one file while the limit is on


def _weights_model(seed: int) -> keras.Model:
    """A Dense model with ~0.5 MB of weights: more than LIMIT."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((256,)), keras.layers.Dense(512)])


class _FileSizeLimit:
    """RLIMIT_FSIZE at LIMIT with SIGXFSZ ignored: writes beyond it fail with EFBIG."""

    def __enter__(self):
        self.handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, self.limits[1]))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.limits)
        signal.signal(signal.SIGXFSZ, self.handler)


def test_text_and_json_replace_the_file_whole_and_leave_no_temp_file(tmp_path):
    path = tmp_path / "state.json"
    files.write_text_atomic(path, "first")
    files.write_json_atomic(path, {"phase": "phase2", "epochs": [1, 2]})
    assert path.read_text() == '{\n  "phase": "phase2",\n  "epochs": [\n    1,\n    2\n  ]\n}\n'
    assert json.loads(path.read_text()) == {"phase": "phase2", "epochs": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_value_json_cannot_write_changes_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json_atomic(path, {"accuracy": 0.5})
    with pytest.raises(TypeError):
        files.write_json_atomic(path, {"accuracy": object()})
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_text_write_that_fails_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.json"
    files.write_text_atomic(path, "old")
    with _FileSizeLimit(), pytest.raises(OSError, match="File too large"):
        files.write_text_atomic(path, "x" * (2 * LIMIT))
    assert path.read_text() == "old"


def test_weights_replace_the_file_whole_and_leave_no_temp_file(tmp_path):
    path = tmp_path / "model.weights.h5"
    files.save_weights_atomic(_weights_model(0), path)
    saved = _weights_model(1)
    files.save_weights_atomic(saved, path)
    loaded = _weights_model(2)
    loaded.load_weights(path)
    for a, b in zip(saved.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights.h5"]


def test_a_weights_write_that_fails_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.weights.h5"
    files.save_weights_atomic(_weights_model(0), path)
    before = path.read_bytes()
    assert len(before) > LIMIT
    with _FileSizeLimit(), pytest.raises(OSError):
        files.save_weights_atomic(_weights_model(1), path)
    assert path.read_bytes() == before


def test_a_failed_write_leaves_no_temp_file(tmp_path):
    """A full disk mid-write keeps the old file and leaves no hidden half-written one."""
    files.write_text_atomic(tmp_path / "history.json", "old")
    files.save_weights_atomic(_weights_model(0), tmp_path / "model.weights.h5")
    with _FileSizeLimit():
        with pytest.raises(OSError):
            files.write_text_atomic(tmp_path / "history.json", "x" * (2 * LIMIT))
        with pytest.raises(OSError):
            files.save_weights_atomic(_weights_model(1), tmp_path / "model.weights.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "model.weights.h5"]
