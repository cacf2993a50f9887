"""Crash safety for `train`: checkpoints, the run's progress record, and the non-finite guard.

A run can be killed at any moment and rerun with the same command:
- `<workdir>/checkpoints/ckpt-N` holds the model and the current phase's optimizer, written at
  every epoch end and every `runtime.checkpoint_every_steps` steps; the last two are kept,
  each with `ckpt-N.state.json`, the record of where the run was when it was written.
- `<workdir>/state.json` says how far the run got: the checkpoint it describes, the phase, the
  epochs finished, whether that checkpoint is mid-epoch, the merged history, the test metrics
  so far, and whether the run (export included) is complete. It is written after the
  checkpoint it describes, by temp file + rename, so it never points at a checkpoint that is
  not on disk.
- A resume verifies that checkpoint (every tensor's checksum) and falls back to the older one
  and its record when it cannot be read (`resume_point`).

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
import re
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


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    """(contents, None), or (None, why it cannot be used); (None, None) when there is no file."""
    if not path.is_file():
        return None, None
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path.name} cannot be read ({e})"
    if not isinstance(value, dict) or not isinstance(value.get("phase"), str):
        return None, f"{path.name} is not a run record (no phase)"
    return value, None


def _numbers(directory: Path) -> list[int]:
    """The numbers of the checkpoints in `directory` (ckpt-N.index), newest first."""
    found = (re.fullmatch(r"ckpt-(\d+)\.index", p.name) for p in directory.glob("ckpt-*.index"))
    return sorted((int(m.group(1)) for m in found if m), reverse=True)


def _record_path(directory: Path, name: str) -> Path:
    """The copy of state.json written with checkpoint `name`: where the run was when it was."""
    return directory / f"{name}.state.json"


def unreadable(prefix: Path) -> str | None:
    """Why the checkpoint at `prefix` cannot be restored, or None when every tensor reads back.

    Reading each tensor checks its checksum, so a truncated or overwritten file is caught
    here rather than halfway through a restore.
    """
    if not Path(f"{prefix}.index").is_file():
        return "missing"
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # TF's reader fails in many ways (OpError, IndexError, ...)
        text = getattr(e, "message", "") or str(e)
        return (text.strip().splitlines() or [type(e).__name__])[0]
    return None


def _legacy_checkpoint(directory: Path) -> str | None:
    """The checkpoint a state.json written before sft_tf named it describes: the newest in the
    CheckpointManager index file (`checkpoints/checkpoint`), which runs then kept."""
    try:
        path = tf.train.latest_checkpoint(str(directory))
    except (tf.errors.OpError, ValueError):
        return None
    return Path(path).name if path else None


def _describe(state: dict) -> str:
    where = f"{state['phase']} after {state['epochs_done']} finished epoch(s)"
    if state.get("mid_epoch_step"):
        where += f" and step {state['mid_epoch_step']} of the next"
    return where


def resume_point(workdir: Path, say=print) -> dict | None:
    """The record of where an interrupted run in `workdir` got to, its checkpoint verified.

    state.json names the checkpoint it describes. When that checkpoint is missing or cannot
    be read, the run goes back to the newest kept checkpoint that can, with the record written
    beside it (`ckpt-N.state.json`), and says so; a run is never silently restarted.

    Returns:
      The record (its "checkpoint" is the one to restore), or None when `workdir` holds no run.

    Raises:
      UserError: there is a run, but no checkpoint of it can be restored.
    """
    workdir = Path(workdir)
    directory = workdir / CHECKPOINT_DIR
    state, problem = _read_json(workdir / STATE_FILE)
    if state is not None and state.get("complete"):
        return state
    numbers = _numbers(directory) if directory.is_dir() else []
    if state is None and problem is None and not numbers:
        return None  # nothing was saved yet: a fresh start loses nothing
    candidates = []
    if state is not None:
        if "checkpoint" not in state:  # written by an sft_tf that did not name it
            state["checkpoint"] = _legacy_checkpoint(directory)
        candidates.append(state)
    for number in numbers:
        record, _ = _read_json(_record_path(directory, f"ckpt-{number}"))
        if record is not None and record not in candidates:
            candidates.append(record)
    failures = [problem] if problem else []
    for candidate in candidates:
        name = candidate.get("checkpoint")
        reason = unreadable(directory / name) if name else "no checkpoint named"
        if reason is None:
            if failures:
                say(
                    f"Warning: {'; '.join(failures)}. Resuming from checkpoint {name} instead: "
                    f"{_describe(candidate)}"
                )
            return candidate
        failures.append(f"checkpoint {name or '?'}: {reason}")
    raise UserError(
        f"cannot resume the run in {workdir}: {'; '.join(failures) or 'no checkpoint'}. Rerun "
        "with --restart to move it aside and start over, or use a new --workdir"
    )


class RunCheckpoints:
    """The model and its optimizer, saved as numbered checkpoints with the run's record.

    Each save writes `checkpoints/ckpt-N` (the weights, the optimizer and the layers' seed
    state), then `ckpt-N.state.json` (where the run was), then `state.json`, then deletes all
    but the newest `keep` checkpoints: at every moment state.json names a complete
    checkpoint, and an older one with its record is there to fall back to.

    The optimizer changes between phases (phase 2 compiles a new one), so the checkpoint
    object is rebuilt by `track()` after each compile; the variables' names in the file are
    the same either way, and only the current phase's optimizer is ever restored.
    tf.train.CheckpointManager is not used: it restarts its numbering with each new checkpoint
    object (phase 2 overwrote phase 1's numbers) and keeps no record beside a checkpoint.
    """

    def __init__(self, workdir: Path, model: keras.Model, keep: int = 2):
        self.workdir = Path(workdir)
        self.directory = self.workdir / CHECKPOINT_DIR
        self.model = model
        self.keep = keep
        self.checkpoint = None

    def track(self, model: keras.Model) -> None:
        """Follows `model` with its newly compiled optimizer (call after each compile)."""
        self.model = model
        # Optimizer slots must exist before a restore can fill them.
        model.optimizer.build(model.trainable_variables)
        # The weights as a plain list, not the model: a Keras model tracks its compiled
        # optimizer, which would drag phase 1's optimizer into phase 2's restore.
        self.checkpoint = tf.train.Checkpoint(**self._model_state(), optimizer=model.optimizer)

    def save(self, state: dict) -> dict:
        """Writes a checkpoint and `state` (the run's record, which then names it).

        Returns:
          The record as written: `state` with "checkpoint" set.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = _numbers(self.directory)
        name = f"ckpt-{(numbers[0] if numbers else 0) + 1}"
        self.checkpoint.write(str(self.directory / name))
        state = {**state, "checkpoint": name}
        write_json_atomic(_record_path(self.directory, name), state)
        write_json_atomic(self.workdir / STATE_FILE, state)
        for number in _numbers(self.directory)[self.keep :]:
            for path in self.directory.glob(f"ckpt-{number}.*"):
                path.unlink(missing_ok=True)
        return state

    def restore(self, name: str, with_optimizer: bool = True) -> None:
        """Restores checkpoint `name`; the optimizer too only if it is the same phase's.

        Each phase compiles its own optimizer over other variables, so a checkpoint written in
        phase 1 gives phase 2 its model weights only.
        """
        target = self.checkpoint if with_optimizer else tf.train.Checkpoint(**self._model_state())
        target.restore(str(self.directory / name)).expect_partial()

    def _model_state(self) -> dict:
        """The weights, and the random-seed state of layers like Dropout (which Keras keeps out
        of `weights`): a resumed run draws the dropout masks the uninterrupted one would."""
        weights = list(self.model.weights)
        ids = {id(w) for w in weights}
        return {"weights": weights, "seeds": [v for v in self.model.variables if id(v) not in ids]}


# What the run is doing ("phase2, epoch 5, step 40"), for the line printed on Ctrl-C.
_position = [""]


def note_position(text: str) -> None:
    _position[0] = text


def interrupted_at() -> str:
    """What the run was doing when interrupted ("" outside a run)."""
    return _position[0]


class ProgressSaver(keras.callbacks.Callback):
    """Has `on_save` write a checkpoint and the run's record every `every_steps` steps and at
    each epoch end; keeps `interrupted_at()` current.

    on_save: called with epochs_done, mid_epoch_step and (at epoch ends) epoch_logs.
    first_step: the steps of the epoch done before this fit (a resumed epoch's fit starts
    there); steps are counted from the epoch's start.
    """

    def __init__(self, phase: str, on_save, every_steps: int = 0, first_step: int = 0):
        super().__init__()
        self.phase = phase
        self.on_save = on_save
        self.every_steps = every_steps
        self.first_step = first_step
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        note_position(f"{self.phase}, epoch {self.epoch + 1}, step {self.first_step + batch + 1}")

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        if self.every_steps and step % self.every_steps == 0:
            self.on_save(epochs_done=self.epoch, mid_epoch_step=step)

    def on_epoch_end(self, epoch, logs=None):
        self.on_save(epochs_done=epoch + 1, mid_epoch_step=0, epoch_logs=logs)
        note_position(f"{self.phase}, after epoch {epoch + 1}")
        self.first_step = 0  # the next epoch of this fit starts at its first step


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


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """history.csv from the run's record: one row per finished epoch, whatever was resumed.

    Written whole (temp file + rename) from state.json's history rather than appended to by
    Keras's CSVLogger, which repeated the rows of an epoch that a resume trained again.
    Columns as CSVLogger wrote them: epoch (from 0), then the metrics in name order.
    """
    keys = sorted(history)
    rows = max((len(v) for v in history.values()), default=0)
    lines = [",".join(["epoch", *keys])]
    for i in range(rows):
        cells = [repr(history[k][i]) if i < len(history[k]) else "NA" for k in keys]
        lines.append(",".join([str(i), *cells]))
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, path)
