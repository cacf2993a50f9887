"""Config files: config.json save/load round trips, and check_config_file's messages."""

import json

import pytest

from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.training import state
from tests.helpers import REPO, tiny_config


def test_save_and_load_round_trip(tmp_path):
    config = tiny_config(data__classes="cat,dog", data__examples_per_class=3)
    config_files.save(config, tmp_path / "config.json")
    loaded = config_files.load(tmp_path / "config.json")
    assert config_files.to_dict(loaded) == config_files.to_dict(config)
    with pytest.raises(UserError, match="not found"):
        config_files.load(tmp_path / "missing.json")


def test_a_key_an_earlier_version_let_through_is_named_and_ignored(tmp_path, capsys):
    """Before config files were checked, c.phase2.epoch = 7 reached config.json while the run
    trained with the default; such a run still loads, resumes and exports."""
    config = tiny_config()
    config_files.save(config, tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["phase2"]["epoch"] = 7
    saved["data"]["augmnet"] = "flip"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config_files.load(tmp_path / "config.json")
    assert config_files.to_dict(loaded) == config_files.to_dict(config)
    assert (
        "ignoring config.data.augmnet, config.phase2.epoch: not fields" in capsys.readouterr().out
    )
    assert state.config_differences(tmp_path, config) == []


CONFIG_FILE_MISTAKES = {
    "syntax error": ("def get_config(:\n", "syntax error in {path} line 1"),
    "raises": (
        "def get_config():\n    raise RuntimeError('boom')\n",
        "{path} line 2 raised RuntimeError: boom",
    ),
    "no get_config": ("x = 1\n", "{path} defines no get_config()"),
    "returns None": ("def get_config():\n    return None\n", "returned NoneType, not a ConfigDict"),
}


@pytest.mark.parametrize("mistake", sorted(CONFIG_FILE_MISTAKES))
def test_config_file_mistakes_name_the_file(mistake, tmp_path):
    source, message = CONFIG_FILE_MISTAKES[mistake]
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(UserError) as raised:
        config_files.check_config_file(str(path))
    assert message.format(path=path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_config_file_suggests_the_closest_name():
    with pytest.raises(UserError, match=r"no such file .*tny\.py; did you mean .*tiny\.py\?"):
        config_files.check_config_file(str(REPO / "configs" / "tny.py"))
    config_files.check_config_file(str(REPO / "configs" / "tiny.py"))  # a good file passes


def test_a_config_file_that_sets_a_field_the_schema_lacks_is_refused(tmp_path):
    """`c.phase2.epoch = 7` would add a field nobody reads: the run would train the default
    epochs and record the stray key in config.json."""
    path = tmp_path / "typo.py"
    path.write_text(
        "from sft_tf import config_lib\n"
        "def get_config():\n"
        "    c = config_lib.base_config()\n"
        "    c.phase2.epoch = 7\n"
        "    return c\n"
    )
    with pytest.raises(UserError) as raised:
        config_files.check_config_file(str(path))
    assert str(raised.value) == (
        f"--config={path}: {path} sets config.phase2.epoch, which is not a config field "
        "(did you mean config.phase2.epochs?); fix the file"
    )
    # A whole section the schema lacks, with no close name.
    path.write_text(path.read_text().replace("c.phase2.epoch = 7", "c.zzz = 1"))
    with pytest.raises(UserError, match=r"sets config\.zzz, which is not a config field; fix"):
        config_files.check_config_file(str(path))


def test_every_shipped_config_sets_only_schema_fields():
    for path in sorted(config_files.PACKAGED.glob("*.py")):
        config_files.check_config_file(str(path))


def test_a_folder_given_as_config_file_lists_its_configs():
    with pytest.raises(UserError) as raised:
        config_files.check_config_file(str(REPO / "configs"))
    message = str(raised.value)
    assert f"{REPO / 'configs'} is a folder; give one of its config files: " in message
    assert "tiny.py" in message and "did you mean" not in message


def test_packaged_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = str(config_files.PACKAGED / "tiny.py")
    assert config_files.resolve_config_spec("tiny") == tiny
    assert config_files.resolve_config_spec("tiny.py") == tiny
    assert config_files.resolve_config_spec("configs/tiny.py") == tiny  # outside the repo
    assert config_files.resolve_config_spec("tiny:arg") == f"{tiny}:arg"
    # A file of the user's own wins over the packaged one of the same name.
    (tmp_path / "tiny.py").write_text("")
    assert config_files.resolve_config_spec("tiny.py") == "tiny.py"
    assert config_files.resolve_config_spec("elsewhere/tiny.py") == "elsewhere/tiny.py"
    assert config_files.resolve_config_spec("nonesuch") == "nonesuch"
    # The repo's configs/ is the packaged folder itself, not a copy that could drift.
    assert (REPO / "configs").resolve() == config_files.PACKAGED
