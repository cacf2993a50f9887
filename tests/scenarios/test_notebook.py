"""notebooks/colab_tpu.ipynb: valid, refers to real flags and config fields, and runs.

The Colab run needs a TPU and GCS; here the notebook is executed top to bottom on CPU with
its parameters cell swapped for a smoke setting (tiny config, local images), so a renamed
flag, field or function breaks a test instead of the next Colab user.
"""

import json
import re

import pytest

from sft_tf import cli
from sft_tf.config import schema
from tests.helpers import REPO

NOTEBOOK = REPO / "notebooks" / "colab_tpu.ipynb"


def _cells(kind: str) -> list[str]:
    nb = json.loads(NOTEBOOK.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


def _has_field(config, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if part not in node:
            return False
        node = node[part]
    return True


def test_notebook_is_valid_and_explains_each_step():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs for c in code), "commit the notebook without outputs"
    # Every code cell follows a markdown cell that says what it does.
    for before, cell in zip(nb.cells, nb.cells[1:]):
        if cell.cell_type == "code":
            assert before.cell_type == "markdown" or "parameters" in before.metadata.get("tags", [])
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
    text = "\n".join(_cells("markdown"))
    assert "colab-badge.svg" in text and "gs://" in text


def test_notebook_flags_and_config_fields_exist():
    code = "\n".join(_cells("code"))
    fields = re.findall(r"--config\.([a-z_][a-z0-9_.]*)=", code)
    assert {"data.train", "data.tfds_data_dir", "export.dir"} <= set(fields)
    config = schema.base_config()
    assert [f for f in fields if not _has_field(config, f)] == []
    # The flags of the `sft_tf train` command (not those of git or pip in other cells).
    train_cell = next(c for c in _cells("code") if '"sft_tf", "train"' in c)
    defined = set(cli.flags.FLAGS)
    flags = re.findall(r'"--([a-z_]+)=', train_cell)
    assert {"config", "workdir", "strategy"} <= set(flags)
    assert [f for f in flags if f not in defined] == []
    params = "\n".join(c for c in _cells("code") if 'STRATEGY = "tpu"' in c)
    assert 'STRATEGY = "tpu"' in params and 'TFDS_DATA_DIR = f"{GCS_BUCKET}' in params


def _smoke_parameters(tmp_path, image_folders, strategy: str, train_spec: str) -> str:
    return "\n".join(
        [
            f"REPO_URL = {str(REPO)!r}",
            f"REPO_DIR = {str(REPO)!r}",
            "INSTALL = False",
            'CONFIG = "configs/tiny.py"',
            'NAME = "tiny"',
            f"STRATEGY = {strategy!r}",
            'GCS_BUCKET = ""',
            'TFDS_DATA_DIR = ""',
            f"DATA_TRAIN = {train_spec!r}",
            f"DATA_VALIDATION = 'folder:{image_folders['test']}'",
            'DATA_TEST = ""',
            f"WORKDIR = {str(tmp_path / 'run')!r}",
            f"EXPORT_DIR = {str(tmp_path / 'saved_models')!r}",
            'EXTRA_FLAGS = ["--config.phase1.learning_rate=0.01"]',
        ]
    )


def _execute(tmp_path, parameters: str):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = parameters
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return nb


def test_preflight_refuses_local_data_under_tpu(tmp_path, image_folders):
    nbclient = pytest.importorskip("nbclient")
    parameters = _smoke_parameters(
        tmp_path, image_folders, "tpu", f"folder:{image_folders['train']}"
    )
    with pytest.raises(nbclient.exceptions.CellExecutionError) as error:
        _execute(tmp_path, parameters)
    message = str(error.value)
    assert "--strategy=tpu needs data on Google Cloud Storage" in message
    assert f"folder:{image_folders['train']}" in message and "gs://" in message
    assert not (tmp_path / "run").exists()  # stopped before training


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_cpu(tmp_path, image_folders):
    parameters = _smoke_parameters(
        tmp_path, image_folders, "auto", f"folder:{image_folders['train']}"
    )
    nb = _execute(tmp_path, parameters)
    outputs = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") in ("stream", "display_data")
    ]
    text = "".join(o.get("text", "") for o in outputs)
    assert "Runtime: CPU" in text
    # The training log reaches the notebook, strategy line first.
    assert "Strategy OneDeviceStrategy: 1 replica(s)" in text and "Phase 2 (" in text
    assert "Export: " in text and (tmp_path / "saved_models" / "tiny" / "1").is_dir()
    # The two figures (training curves, predictions) were drawn.
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    assert json.loads((tmp_path / "run" / "history.json").read_text())["loss"]
