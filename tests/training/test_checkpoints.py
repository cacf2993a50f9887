"""RunCheckpoints: numbered checkpoints, each with its record, the newest two kept."""

import json

import numpy as np

from sft_tf.training.state import RunState
from tests.helpers import restored_kernel, three_saves


def test_saves_keep_two_each_with_its_record_and_state_names_the_newest(tmp_path):
    kernels = three_saves(tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert [n for n in names if n.endswith(".index")] == ["ckpt-2.index", "ckpt-3.index"]
    assert (
        json.loads((tmp_path / "checkpoints" / "ckpt-2.state.json").read_text())["epochs_done"] == 2
    )
    state = RunState.from_dict(json.loads((tmp_path / "state.json").read_text()))
    assert state.checkpoint == "ckpt-3" and state.epochs_done == 3
    np.testing.assert_array_equal(restored_kernel(tmp_path, "ckpt-3"), kernels[2])
