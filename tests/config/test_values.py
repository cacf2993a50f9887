"""The checks on plain values: out-of-range numbers refused before TensorFlow is needed."""

import pytest

from sft_tf.config import values
from sft_tf.errors import UserError
from tests.helpers import REPO, fresh_python, load_config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("phase1.learning_rate", float("nan"), "must be a finite number"),
        ("phase2.l2sp", float("inf"), "must be a finite number"),
        # A field with its own range is told that range, not int32's.
        ("phase2.epochs", 10**20, "must be between 0 and 10000"),
        ("seed", 2**40, r"is too large \(the limit is 2147483647\)"),
        ("phase1.epochs", 10_001, "must be between 0 and 10000"),
        ("model.image_size", 100_000, "is above 1024"),
    ],
)
def test_values_that_would_crash_later_are_refused(field, value, message):
    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = "folder:/data/train"
    section, name = field.rsplit(".", 1) if "." in field else ("", field)
    (config[section] if section else config)[name] = value
    with pytest.raises(UserError, match=f"config.{field}=.*{message}"):
        values.check_values(config, "train")


def test_values_import_nothing_heavy():
    """The CLI runs these checks before TensorFlow's import: they must not trigger it."""
    probe = "import sys; from sft_tf.config import values; print('tensorflow' in sys.modules)"
    result = fresh_python(probe, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_unwritable_paths_are_named_and_nothing_is_created(tmp_path):
    values.check_writable(tmp_path / "new" / "run", "--workdir")  # creatable: fine
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--workdir=.*cannot be created: .*file is not a directory"):
        values.check_writable(tmp_path / "file" / "run", "--workdir")
