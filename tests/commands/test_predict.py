"""`sft-tf predict --workdir`: which export a run names, and what it says when that is gone."""

import json

import pytest

from sft_tf.commands import predict
from sft_tf.errors import UserError


def test_a_run_whose_export_is_gone_says_so_and_how_to_remake_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"export": "saved_models/x/1"}))
    with pytest.raises(UserError) as raised:
        predict.main(["a.png"], None, "run", None, False)
    assert str(raised.value) == (
        "saved_models/x/1, the export run/metrics.json names, is not there (pruned by "
        "export.keep, moved, or relative to another folder); re-export: sft-tf export "
        "--workdir=run"
    )
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"phase1": {}}))
    with pytest.raises(UserError, match="run has no export; pass --model=saved_models/NAME"):
        predict.main(["a.png"], None, "run", None, False)
