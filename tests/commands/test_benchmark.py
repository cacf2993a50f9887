"""`sft-tf benchmark` through the real CLI: its errors. (Its measurements of a real export are
checked in tests/serving/test_variants.py.)"""

from tests.helpers import sft_tf


def test_a_corrupt_export_is_named_as_corrupt_not_as_a_failed_write(tmp_path):
    (tmp_path / "x" / "1").mkdir(parents=True)
    (tmp_path / "x" / "1" / "saved_model.pb").write_bytes(b"not a model")
    result = sft_tf("benchmark", "--model=x", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "sft-tf: error: cannot load the SavedModel in x/1: saved_model.pb is corrupt (Wire "
        "format was corrupt); re-export it (sft-tf export --workdir=RUN_DIR)\n"
    )
