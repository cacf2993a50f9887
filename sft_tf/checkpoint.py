"""Crash safety for `train`: checkpoints, the run's progress record, and the non-finite guard.

A run can be killed at any moment and rerun with the same command:
- `<workdir>/checkpoints/` holds the model and the current phase's optimizer (a
  tf.train.CheckpointManager keeping the last two), written at every epoch end and every
  `runtime.checkpoint_every_steps` steps.
- `<workdir>/state.json` says how far the run got: the phase, the epochs finished, whether the
  newest checkpoint is mid-epoch, the merged history, the test metrics so far, and whether the
  run (export included) is complete. It is written after the checkpoint it describes, by temp
  file + rename, so it never points at a checkpoint that is not on disk.

A resumed run continues exactly where the checkpoint left off: the checkpoint holds the
weights, the optimizer (its step count drives the learning-rate schedule) and the random state
of layers such as Dropout, and the training stream gives the remaining batches of the
interrupted epoch (`data.epoch_stream`); nothing is trained twice.

Keras's BackupAndRestore is not used: it deletes its backup at the end of every fit() (and a
two-phase run calls fit twice), and replays an interrupted epoch from batch 0 silently.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import tensorflow as tf

from sft_tf.errors import UserError

STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def write_json_atomic(path: Path, value) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)


def read_state(workdir: Path) -> dict | None:
    path = Path(workdir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class RunCheckpoints:
    """The model and its optimizer, saved and restored through tf.train.CheckpointManager.

    The optimizer changes between phases (phase 2 compiles a new one), so the checkpoint
    object is rebuilt by `track()` after each compile; the variables' names in the file are
    the same either way, and only the current phase's optimizer is ever restored.
    """

    def __init__(self, workdir: Path, model: keras.Model, keep: int = 2):
        self.directory = Path(workdir) / CHECKPOINT_DIR
        self.model = model
        self.keep = keep
        self.manager = None

    def track(self, model: keras.Model) -> None:
        """Follows `model` with its newly compiled optimizer (call after each compile)."""
        self.model = model
        # Optimizer slots must exist before a restore can fill them.
        model.optimizer.build(model.trainable_variables)
        # The weights as a plain list, not the model: a Keras model tracks its compiled
        # optimizer, which would drag phase 1's optimizer into phase 2's restore.
        checkpoint = tf.train.Checkpoint(**self._model_state(), optimizer=model.optimizer)
        self.manager = tf.train.CheckpointManager(
            checkpoint, str(self.directory), max_to_keep=self.keep
        )

    def save(self) -> str:
        return self.manager.save()

    def restore_latest(self, with_optimizer: bool = True) -> str | None:
        """Restores the newest checkpoint; the optimizer too only if it is the same phase's.

        Each phase compiles its own optimizer over other variables, so a checkpoint written in
        phase 1 gives phase 2 its model weights only.
        """
        path = tf.train.latest_checkpoint(str(self.directory))
        if path:
            if with_optimizer:
                target = self.manager.checkpoint
            else:
                target = tf.train.Checkpoint(**self._model_state())
            target.restore(path).expect_partial()
        return path

    def _model_state(self) -> dict:
        """The weights, and the random-seed state of layers like Dropout (which Keras keeps out
        of `weights`): a resumed run draws the dropout masks the uninterrupted one would."""
        weights = list(self.model.weights)
        ids = {id(w) for w in weights}
        return {"weights": weights, "seeds": [v for v in self.model.variables if id(v) not in ids]}


class ProgressSaver(keras.callbacks.Callback):
    """Saves a checkpoint, then the state, every `every_steps` steps and at each epoch end.

    first_step: the steps of the epoch done before this fit (a resumed epoch's fit starts
    there); steps are counted from the epoch's start.
    """

    def __init__(
        self, checkpoints: RunCheckpoints, on_save, every_steps: int = 0, first_step: int = 0
    ):
        super().__init__()
        self.checkpoints = checkpoints
        self.on_save = on_save
        self.every_steps = every_steps
        self.first_step = first_step
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        if self.every_steps and step % self.every_steps == 0:
            self.checkpoints.save()
            self.on_save(epochs_done=self.epoch, mid_epoch_step=step)

    def on_epoch_end(self, epoch, logs=None):
        self.checkpoints.save()
        self.on_save(epochs_done=epoch + 1, mid_epoch_step=0, epoch_logs=logs)


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises TrainingDiverged on the first NaN or infinite loss, before anything is saved."""

    def __init__(self, phase: str, hint: str, first_step: int = 0):
        super().__init__()
        self.phase = phase
        self.hint = hint
        self.first_step = first_step  # as for ProgressSaver
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"{self.phase}: the loss became {float(loss)} at epoch {self.epoch + 1}, step "
                f"{self.first_step + batch + 1}; {self.hint}. The last good checkpoint is kept "
                "and nothing was exported; rerun the same command to resume from it"
            )
