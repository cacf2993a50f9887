"""Backbone weights files and their JSON sidecars: what `pretrain` saves and `train` starts from.

The sidecar records the backbone, its options and the source task, so a file made for
another architecture or width is refused with a clear message before any model is built.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import keras

from sft_tf.errors import UserError


def sidecar_path(weights_path: str | Path) -> Path:
    """The JSON written beside a backbone weights file: what it is and where it came from."""
    path = Path(weights_path)
    return path.with_name(path.name.removesuffix(".weights.h5") + ".json")


def save_backbone_weights(base: keras.Model, path: str | Path, info: dict) -> None:
    """Saves the base's weights and a JSON sidecar (`info` + backbone identity)."""
    path = Path(path)
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    base.save_weights(tmp)
    tmp.replace(path)
    sidecar = sidecar_path(path)
    sidecar.with_suffix(".tmp").write_text(json.dumps(info, indent=2) + "\n")
    sidecar.with_suffix(".tmp").replace(sidecar)


def check_weights_sidecar(path: str | Path, backbone: str, options: dict) -> None:
    """Cheap check before any model is built: the sidecar JSON names the same backbone.

    Raises:
      UserError: the file was made for another backbone or width.
    """
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        info = json.loads(sidecar.read_text())
        made_for = (info.get("backbone"), info.get("options", {}))
        if made_for != (backbone, options):
            raise UserError(
                f"config.model.weights={path} was made for {made_for[0]} {made_for[1]}, "
                f"not {backbone} {options}; set config.model.backbone/alpha to match or "
                "pretrain a new backbone"
            )


def load_backbone_weights(base: keras.Model, path: str, backbone: str, options: dict) -> None:
    """Loads a weights file into the base, refusing one made for another backbone.

    Raises:
      UserError: the sidecar names a different backbone or options, or Keras cannot map the
        file's variables onto this base.
    """
    check_weights_sidecar(path, backbone, options)
    try:
        with warnings.catch_warnings():
            # Keras only warns when some variables could not be matched; that is a wrong file.
            warnings.simplefilter("error")
            base.load_weights(path)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"config.model.weights={path} does not fit {backbone} {options}: {first}; give the "
            "backbone.weights.h5 that `sft-tf pretrain` wrote for this backbone, or 'imagenet'"
        ) from e
