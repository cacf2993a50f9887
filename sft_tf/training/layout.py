"""What a workdir holds: the files `train` and `pretrain` write and the other commands read.

config.json          the resolved config (sft_tf.config.files.save)
labels.txt           the class names, one per line, in output order
state.json           where the run is (sft_tf.training.state.RunState)
checkpoints/         ckpt-N (sft_tf.training.checkpoints), each with ckpt-N.state.json beside
model.weights.h5     the whole model's weights, written when training ends (sft_tf.training.trained)
history.csv/.json    one row per epoch of both phases; metrics.json, report/ at the end
backbone.weights.h5  `pretrain`'s trained base, with a .json sidecar
.lock                held by the process working here (sft_tf.lock)

The names are here, apart from the modules that write the files, so that readers which load
no TensorFlow (the CLI's checks before its import) need not import those modules.
"""

from __future__ import annotations

import re
from pathlib import Path

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
WEIGHTS_FILE = "model.weights.h5"
BACKBONE_FILE = "backbone.weights.h5"
STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"


def checkpoint_numbers(directory: Path) -> list[int]:
    """The numbers of the checkpoints in `directory` (ckpt-N.index), newest first."""
    found = (re.fullmatch(r"ckpt-(\d+)\.index", p.name) for p in directory.glob("ckpt-*.index"))
    return sorted((int(m.group(1)) for m in found if m), reverse=True)


def checkpoint_names(directory: Path) -> list[str]:
    """The names of the checkpoints in `directory`, newest first ([] when there is none)."""
    return [f"ckpt-{n}" for n in checkpoint_numbers(directory)] if directory.is_dir() else []


def record_path(directory: Path, name: str) -> Path:
    """The copy of state.json written with checkpoint `name`: where the run was when it was."""
    return directory / f"{name}.state.json"
