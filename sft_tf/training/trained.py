"""A workdir's trained model, finished or interrupted: what `export` and `evaluate` read.

A finished run's weights are `model.weights.h5`, written once when training ends. An
interrupted run's are its newest readable checkpoint, the one a resume would continue from
(`resume.resume_point`): written at every epoch end and every
`runtime.checkpoint_every_steps` steps, so nothing trained before the interruption is lost.
The weights file is not rewritten at every epoch end: Keras's `save_weights` took 0.6 s for
MobileNetV2 alpha 0.35 (2 MB, 262 arrays; the checkpoint of the same model 0.2-0.4 s),
measured, which was a second cost per epoch for what the checkpoint already holds. Runs
interrupted by earlier versions, which did rewrite it, are read the same way (their
checkpoints are newer or as new); the weights file is the fallback when none of their
checkpoints can be read.
"""

from __future__ import annotations

from pathlib import Path

import keras
import ml_collections

from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.log import say
from sft_tf.training import recipe
from sft_tf.training.checkpoints import RunCheckpoints
from sft_tf.training.layout import CONFIG_FILE, LABELS_FILE, WEIGHTS_FILE
from sft_tf.training.resume import resume_point


def load_trained(workdir: str | Path) -> tuple[ml_collections.ConfigDict, keras.Model, list[str]]:
    """Rebuilds the model trained in `workdir` from config.json, labels.txt and its weights.

    Returns:
      (config, model, class names).

    Raises:
      UserError: the workdir holds no run, or no weights of it can be read.
    """
    workdir = Path(workdir)
    config = config_files.load(workdir / CONFIG_FILE)
    labels_path = workdir / LABELS_FILE
    if not labels_path.is_file():
        raise UserError(f"{labels_path} not found; has `sft-tf train` run in {workdir}?")
    class_names = labels_path.read_text().splitlines()
    model = recipe.build_model(
        config, len(class_names), weights="", batchnorm=config.phase2.batchnorm
    )
    _load_weights(workdir, model)
    return config, model, class_names


def _load_weights(workdir: Path, model: keras.Model) -> None:
    weights = workdir / WEIGHTS_FILE
    try:
        point = resume_point(workdir)  # a finished run's record, or the newest
    except UserError as e:  # an interrupted run whose checkpoints are all damaged
        if not weights.is_file():
            raise UserError(f"no weights of the run in {workdir} can be read: {e}") from None
        say(f"Warning: {e}. Using {weights} (an earlier version's last epoch end) instead")
        point = None
    if point is not None and not point.complete and point.checkpoint:
        RunCheckpoints(workdir, model).restore(point.checkpoint, with_optimizer=False)
        say(f"Unfinished run: the weights of checkpoint {point.checkpoint}, {point.describe()}")
        return
    if not weights.is_file():
        raise UserError(f"{weights} not found; has `sft-tf train` run in {workdir}?")
    model.load_weights(weights)
