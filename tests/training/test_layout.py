"""sft_tf/training/layout.py: the checkpoints a workdir holds, newest first, as the real
checkpoint writer names them, and where each one's state record is."""

from sft_tf.training import layout
from tests.helpers import three_saves


def test_a_runs_real_checkpoints_are_listed_newest_first_with_their_records(tmp_path):
    three_saves(tmp_path)  # the writer keeps the newest two of its three saves
    directory = tmp_path / layout.CHECKPOINT_DIR
    assert layout.checkpoint_numbers(directory) == [3, 2]
    assert layout.checkpoint_names(directory) == ["ckpt-3", "ckpt-2"]
    for name in layout.checkpoint_names(directory):
        assert layout.record_path(directory, name) == directory / f"{name}.state.json"
        assert layout.record_path(directory, name).is_file()


def test_numbers_compare_as_numbers_and_only_index_files_count(tmp_path):
    for name in (
        "ckpt-9.index",
        "ckpt-10.index",
        "ckpt-11.data-00000-of-00001",  # its index not written yet: not a checkpoint
        "ckpt-12.state.json",
        "ckpt-x.index",
        "ckpt-7.index.tmp",
        "other-13.index",
    ):
        (tmp_path / name).write_bytes(b"")
    assert layout.checkpoint_numbers(tmp_path) == [10, 9]
    assert layout.checkpoint_names(tmp_path) == ["ckpt-10", "ckpt-9"]


def test_no_checkpoint_folder_means_no_checkpoints(tmp_path):
    assert layout.checkpoint_names(tmp_path / "checkpoints") == []
    assert layout.checkpoint_names(tmp_path) == []
