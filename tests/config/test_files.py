"""Config files: config.json save/load round trips, and check_config_file's messages."""

import pytest

from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from tests.helpers import REPO, tiny_config


def test_save_and_load_round_trip(tmp_path):
    config = tiny_config(data__classes="cat,dog", data__examples_per_class=3)
    config_files.save(config, tmp_path / "config.json")
    loaded = config_files.load(tmp_path / "config.json")
    assert config_files.to_dict(loaded) == config_files.to_dict(config)
    with pytest.raises(UserError, match="not found"):
        config_files.load(tmp_path / "missing.json")


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
