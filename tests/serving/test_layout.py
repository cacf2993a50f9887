"""sft_tf/serving/layout.py: which version folder an export root resolves to, as TF Serving
picks one (the highest integer-named folder; anything else, a staging folder included, is not
a version), and the export a finished run names."""

import json

import pytest

from sft_tf.errors import UserError
from sft_tf.serving import layout


def _version(root, name: str):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")  # layout goes by names, not contents
    return folder


@pytest.fixture
def root(tmp_path):
    """Versions 2, 9 and 10, beside what is not a version: a staging folder, a backup, a name,
    and a file named like a version."""
    root = tmp_path / "saved_models" / "tiny"
    for name in ("2", "9", "10", f"{layout.STAGING_PREFIX}11", "10.bak", "latest"):
        _version(root, name)
    # TF Serving would take this file for version 12 and fail to load it; no export has it.
    (root / "12").write_text("not a folder")
    return root


def test_versions_are_the_integer_folders_in_numeric_order(root, tmp_path):
    assert layout.versions(root) == [2, 9, 10]
    assert layout.versions(tmp_path / "nothing_here") == []


def test_the_highest_version_is_resolved_not_the_last_by_name(root):
    assert layout.resolve_export(root) == root / "10"
    assert layout.resolve_export(str(root), 9) == root / "9"


def test_a_version_folder_is_its_own_export(root):
    assert layout.resolve_export(root / "9") == root / "9"
    assert layout.resolve_export(root / "9", 2) == root / "9"  # a folder given wins


def test_a_missing_version_and_an_empty_root_are_refused_by_name(root, tmp_path):
    with pytest.raises(UserError) as raised:
        layout.resolve_export(root, 3)
    assert str(raised.value) == f"--version=3 not in {root} (versions: [2, 9, 10])"
    only_staging = tmp_path / "half_written"
    _version(only_staging, f"{layout.STAGING_PREFIX}1")
    with pytest.raises(UserError) as raised:
        layout.resolve_export(only_staging)
    assert str(raised.value) == (
        f"--model={only_staging}: no integer version folders with a SavedModel inside"
    )


def test_a_version_with_leading_zeros_resolves_to_its_own_folder(tmp_path):
    """TF Serving serves folder 007 as version 7; so do we."""
    folder = _version(tmp_path / "tiny", "007")
    assert layout.versions(tmp_path / "tiny") == [7]
    assert layout.resolve_export(tmp_path / "tiny") == folder
    assert layout.resolve_export(tmp_path / "tiny", version=7) == folder


def test_run_export_is_the_export_metrics_json_names(tmp_path):
    workdir, export = tmp_path / "run", _version(tmp_path / "saved_models" / "tiny", "3")
    workdir.mkdir()
    (workdir / "metrics.json").write_text(json.dumps({"export": str(export)}))
    assert layout.run_export(workdir) == str(export)


@pytest.mark.parametrize(
    "metrics, message",
    [
        (None, "{metrics} not found; pass --model=saved_models/NAME"),
        ({"phase1": {}}, "{workdir} has no export; pass --model=saved_models/NAME"),
        ({"export": ""}, "{workdir} has no export; pass --model=saved_models/NAME"),
        (
            {"export": "{gone}"},
            "{gone}, the export {metrics} names, is not there (pruned by export.keep, moved, "
            "or relative to another folder); re-export: sft-tf export --workdir={workdir}",
        ),
    ],
)
def test_run_export_says_why_a_run_has_none(tmp_path, metrics, message):
    workdir, gone = tmp_path / "run", tmp_path / "saved_models" / "tiny" / "1"
    workdir.mkdir()
    names = {"workdir": workdir, "metrics": workdir / "metrics.json", "gone": gone}
    if metrics is not None:
        text = json.dumps(metrics).replace("{gone}", str(gone))
        (workdir / "metrics.json").write_text(text)
    with pytest.raises(UserError) as raised:
        layout.run_export(workdir)
    assert str(raised.value) == message.format(**names)
