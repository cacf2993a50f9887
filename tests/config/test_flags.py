"""--config flag help: `--config.a.b=None` unsets the schema's optional fields."""

import pytest

from sft_tf.config import flags as config_flags
from sft_tf.errors import UserError
from tests.helpers import tiny_config


def test_none_unsets_optional_fields_and_the_last_override_wins():
    argv = [
        "sft-tf",
        "train",
        "--config=configs/tiny.py",
        "--config.model.alpha=None",
        "--config.data.examples_per_class=4",
        "--config.data.examples_per_class=none",
        "--config.runtime.steps_per_execution=None",
        "--config.runtime.steps_per_execution=2",  # given again after None: 2 it is
        "--config.phase1.epochs=3",
    ]
    kept, unset = config_flags.split_unsets(argv)
    assert unset == ["model.alpha", "data.examples_per_class"]
    # The flag parser cannot read None: it sees no None, and nothing of an unset field.
    assert kept == [
        "sft-tf",
        "train",
        "--config=configs/tiny.py",
        "--config.runtime.steps_per_execution=2",
        "--config.phase1.epochs=3",
    ]
    config = tiny_config(data__examples_per_class=4)
    assert config.model.alpha == 0.35
    config_flags.finish_config(config, unset)
    assert config.model.alpha is None and config.data.examples_per_class is None


def test_none_for_a_field_that_needs_a_value_is_refused():
    with pytest.raises(UserError, match=r"config.phase1.epochs cannot be unset \(None\)"):
        config_flags.split_unsets(["sft-tf", "train", "--config.phase1.epochs=None"])
    # Not a field at all: left for the flag parser, which names the closest field.
    kept, unset = config_flags.split_unsets(["--config.model.alpah=None"])
    assert kept == ["--config.model.alpah=None"] and unset == []


def test_export_overrides_are_parsed_against_the_runs_own_config(tmp_path):
    """`sft-tf export --workdir=DIR --config.export.X=V`: DIR/config.json is the --config
    file, put before the overrides (ml_collections reads them in that order)."""
    from sft_tf.config import files, run_config

    files.save(tiny_config(), tmp_path / "config.json")
    argv = ["sft-tf", "export", f"--workdir={tmp_path}", "--config.export.onnx=true"]
    given = list(argv)
    assert config_flags.export_overrides(argv) == [
        *argv[:2],
        f"--config={config_flags.RUN_CONFIG}:{tmp_path}",
        *argv[2:],
    ]
    assert argv == given
    assert run_config.get_config(str(tmp_path)) == files.load(tmp_path / "config.json")
    # Nothing to parse: argv as it was, for export without overrides and for other commands.
    assert config_flags.export_overrides(argv[:3]) == argv[:3]
    train = ["sft-tf", "train", "--config=configs/tiny.py", "--config.export.onnx=true"]
    assert config_flags.export_overrides(train) == train
    with pytest.raises(UserError, match="config.name and config.export.\\* overrides"):
        config_flags.export_overrides([*argv, "--config.model.image_size=64"])


def test_home_is_expanded_in_path_flags_and_fields(monkeypatch, tmp_path):
    """The shell leaves `~` alone after `=`: taken literally it would make a folder named `~`."""
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ["sft-tf", "train", "--workdir=~/runs/t", "--model", "~/m", "--config=tiny"]
    prepared = config_flags.prepare_argv(argv)
    assert prepared[2:5] == [f"--workdir={tmp_path}/runs/t", "--model", f"{tmp_path}/m"]
    assert prepared[5].endswith("sft_tf/configs/tiny.py")
    config = tiny_config(export__dir="~/models", model__weights="~/w.h5", data__cache_dir="/c~")
    config_flags.finish_config(config, [])
    assert config.export.dir == f"{tmp_path}/models"
    assert config.model.weights == f"{tmp_path}/w.h5"
    assert config.data.cache_dir == "/c~"  # only a leading ~ means home
    for path in config_flags.PATH_FIELDS:  # each names a real text field
        section, name = path.split(".")
        assert isinstance(config[section][name], str)


def test_config_given_twice_is_one_line():
    with pytest.raises(UserError, match=r"^--config is given 2 times; give one config file"):
        config_flags.prepare_argv(["sft-tf", "train", "--config=tiny", "--config", "folder"])
