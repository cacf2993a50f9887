"""The export contract: what a version folder holds and what its signatures are called.

TF Serving clients, `sft-tf predict` and the tests all read exports through these names; they
change only with a reader for exports written before.
"""

from __future__ import annotations

import json
from pathlib import Path

from sft_tf.errors import UserError

# Signatures: encoded image bytes, decoded uint8 pixels, serialized tf.train.Example records.
SIGNATURES = ("serving_default", "serving_images", "serving_tf_example")
LABELS_FILE = "assets/labels.txt"
MANIFEST_FILE = "assets.extra/sft_tf.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
TFLITE_DIR = "assets.extra/tflite"
ONNX_DIR = "assets.extra/onnx"
# A version is written under this prefix and renamed to its number once verified.
STAGING_PREFIX = ".staging-"
# Feature key of the encoded image in tf.train.Example records (TF Model Garden's layout).
IMAGE_KEY = "image/encoded"


def versions(model_root: str | Path) -> list[int]:
    """The integer version folders under a model root, ascending."""
    return sorted(version_folders(model_root))


def version_folders(model_root: str | Path) -> dict[int, Path]:
    """version -> the folder TF Serving serves as it: "7", or "007" where a tool wrote that
    (TF Serving reads the folder name as a number)."""
    root = Path(model_root)
    if not root.is_dir():
        return {}
    found = {}
    # Sorted by name so that of "7" and "007" (both version 7 to TF Serving) "7" wins.
    for path in sorted(root.iterdir()):
        if path.is_dir() and path.name.isdigit():
            found[int(path.name)] = path
    return found


def resolve_export(model_root: str | Path, version: int | None = None) -> Path:
    """The folder of `version` (default: the highest) under an export root.

    Also accepts a version folder itself.

    Raises:
      UserError: no such export.
    """
    root = Path(model_root)
    if (root / "saved_model.pb").is_file():
        return root
    folders = version_folders(root)
    found = sorted(folders)
    if not found:
        raise UserError(f"--model={root}: no integer version folders with a SavedModel inside")
    if version is None:
        return folders[found[-1]]
    if version not in found:
        raise UserError(f"--version={version} not in {root} (versions: {found})")
    return folders[version]


def run_export(workdir: str | Path) -> str:
    """The export a finished run in `workdir` names in its metrics.json (its newest)."""
    metrics_path = Path(workdir) / "metrics.json"
    if not metrics_path.is_file():
        raise UserError(f"{metrics_path} not found; pass --model=saved_models/NAME")
    root = json.loads(metrics_path.read_text()).get("export") or ""
    if not root:
        raise UserError(f"{workdir} has no export; pass --model=saved_models/NAME")
    if not Path(root).is_dir():
        raise UserError(
            f"{root}, the export {metrics_path} names, is not there (pruned by export.keep, "
            f"moved, or relative to another folder); re-export: sft-tf export --workdir={workdir}"
        )
    return root
