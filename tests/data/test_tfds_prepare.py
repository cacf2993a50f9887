"""Preparing a TFDS dataset that is not there yet: refused at once when its download cannot
start, and nothing left behind when a download fails. The downloads go through proxies in the
test (a closed port, a local server answering 404), so that they fail the same way with or
without network; TFDS's own download would wait ~200 s on its retries.

The preparation that succeeds offline, from a download already in the cache, is
tests/data/test_sources.py's tf_flowers test.
"""

import http.server
import threading
import time

import pytest

from sft_tf.data import sources as sources_lib
from sft_tf.errors import UserError
from tests.data.conftest import send_downloads_to
from tests.helpers import REPO, sft_tf, snapshot


def _tree(folder):
    """Every path below `folder`, folders included (an empty folder left behind counts)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_offline_tfds_fails_at_once_naming_the_fix_and_creates_nothing(tmp_path, no_network):
    """Unprepared and not downloadable: TFDS's own download would retry for ~200 s."""
    data_dir, home = tmp_path / "tfds", tmp_path / "home"
    home.mkdir()
    args = [
        "train",
        f"--config={REPO / 'configs' / 'tiny.py'}",
        "--config.data.train=tfds:mnist",
        f"--config.data.tfds_data_dir={data_dir}",
        f"--workdir={tmp_path / 'run'}",
    ]
    start = time.monotonic()
    result = sft_tf(*args, cwd=tmp_path, check=False)
    # The bound leaves room for TensorFlow's start-up on a loaded 2-core machine (10 s and
    # more); the wait this guards against is 200 s.
    assert time.monotonic() - start < 60
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"sft-tf: error: config.data.train='tfds:mnist': TFDS mnist is not prepared under "
        f"{data_dir} and could not be downloaded (proxy {no_network}: connection refused); "
        "prepare it on a machine with network (tfds build mnist --data_dir=DIR), copy DIR here "
        "and set config.data.tfds_data_dir=DIR"
    )
    assert result.stderr.count("sft-tf: error:") == 1
    assert _tree(tmp_path) == ["home"]  # no data dir, no workdir


def test_offline_tfds_default_data_dir_is_left_as_it_was(tmp_path, monkeypatch, no_network):
    """The default data dir (~/tensorflow_datasets) of a user who has one: untouched."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    (tmp_path / "tensorflow_datasets" / "downloads").mkdir(parents=True)
    (tmp_path / "tensorflow_datasets" / "downloads" / "other.zip").write_bytes(b"x")
    before = _tree(tmp_path)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"not prepared under .*tensorflow_datasets and could not"):
        sources_lib.load_examples("tfds:mnist", "config.data.train")
    assert time.monotonic() - start < 10
    assert _tree(tmp_path) == before


class _NotFound(http.server.BaseHTTPRequestHandler):
    """A proxy that answers every request 404: the download starts and fails at once."""

    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass  # keep the test's output clean


def test_a_download_that_fails_leaves_only_what_was_there(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    send_downloads_to(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}")
    data_dir = tmp_path / "tfds"
    # Someone's earlier downloads, and an old temporary folder: not ours to remove.
    (data_dir / "downloads" / "tf_flowers" / "old.tgz.tmp.0123").mkdir(parents=True)
    (data_dir / "downloads" / "tf_flowers" / "old.tgz.tmp.0123" / "part").write_bytes(b"1")
    (data_dir / "downloads" / "other.zip").write_bytes(b"2")
    before, files = _tree(data_dir), snapshot(data_dir)
    try:
        with pytest.raises(UserError, match=r"could not read TFDS tf_flowers .*DownloadError"):
            sources_lib.load_examples(
                "tfds:tf_flowers", "config.data.train", tfds_data_dir=str(data_dir)
            )
    finally:
        server.shutdown()
    assert _tree(data_dir) == before and snapshot(data_dir) == files
