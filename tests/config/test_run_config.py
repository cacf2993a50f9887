"""sft_tf/config/run_config.py: a run's config.json as a --config file. ml_collections loads it
as `--config=run_config.py:DIR` and parses overrides against the run's own values."""

import sys

import pytest
from absl import flags
from ml_collections import config_flags

from sft_tf.config import files, run_config
from sft_tf.errors import UserError
from tests.helpers import tiny_config


def _saved_run(tmp_path):
    config = tiny_config(name="flowers", seed=7, data__global_batch_size=16)
    config.export.top_k = 3
    (tmp_path / "run").mkdir()
    files.save(config, tmp_path / "run" / "config.json")
    return config, tmp_path / "run"


def test_get_config_is_the_runs_config(tmp_path):
    saved, workdir = _saved_run(tmp_path)
    loaded = run_config.get_config(str(workdir))
    assert files.to_dict(loaded) == files.to_dict(saved)
    assert (loaded.name, loaded.seed, loaded.data.global_batch_size) == ("flowers", 7, 16)


def test_overrides_parse_against_the_runs_values_as_a_config_file(tmp_path, monkeypatch):
    """What `sft-tf export --workdir=DIR --config.export.FIELD=VALUE` hands to ml_collections
    (which reads the overrides from sys.argv)."""
    saved, workdir = _saved_run(tmp_path)
    argv = [
        "sft-tf",
        f"--config={run_config.__file__}:{workdir}",
        "--config.export.tflite=True",
        "--config.export.dir=elsewhere",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    flag_values = flags.FlagValues()
    flag = config_flags.DEFINE_config_file("config", flag_values=flag_values, lock_config=True)
    flag_values(argv)
    config = flag.value
    assert (config.export.tflite, config.export.dir) == (True, "elsewhere")
    assert config.export.top_k == 3 and config.name == "flowers"  # the run's, not defaults
    expected = files.to_dict(saved)
    expected["export"].update(tflite=True, dir="elsewhere")
    assert files.to_dict(config) == expected


def test_a_folder_without_a_run_is_named(tmp_path):
    with pytest.raises(UserError) as raised:
        run_config.get_config(str(tmp_path))
    assert str(raised.value) == (
        f"{tmp_path / 'config.json'} not found; is this a workdir written by `sft-tf train`?"
    )
