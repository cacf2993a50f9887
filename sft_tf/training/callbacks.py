"""The Keras callbacks of a training phase: progress checkpoints, the NaN stop, Ctrl-C.

Keras's own pieces were weighed first: BackupAndRestore deletes its backup at the end of each
fit() and replays an interrupted epoch from batch 0 (see sft_tf.training.checkpoints), and
TerminateOnNaN(raise_error=True) raises a RuntimeError that names neither the phase, the step
nor the fix, where a diverged run must stop with one clear line and exit status 2.
"""

from __future__ import annotations

import math
import signal
import threading

import keras

from sft_tf.errors import UserError
from sft_tf.training.checkpoints import RunCheckpoints
from sft_tf.training.state import RunState


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


# What the run is doing ("phase2, epoch 5, step 40"), for the line printed on Ctrl-C.
_position = [""]


def note_position(text: str) -> None:
    _position[0] = text


def interrupted_at() -> str:
    """What the run was doing when interrupted ("" outside a run)."""
    return _position[0]


# Set by Ctrl-C (`watch_interrupts`); `StopOnInterrupt` raises again at the next batch end.
_interrupted = threading.Event()


def watch_interrupts() -> None:
    """Makes Ctrl-C stop a run even when its KeyboardInterrupt is lost.

    Python raises KeyboardInterrupt at whatever bytecode runs next; when that is a finaliser
    (TensorFlow frees iterators and tensors all the time) the exception is printed as "ignored"
    and training goes on. Measured: one SIGINT in a full suite run on a loaded machine went
    that way. The handler raises as Python's does and also remembers the interrupt, and
    `StopOnInterrupt` raises again at the next batch end. Only the main thread can install it.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    _interrupted.clear()

    def interrupt(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)


class StopOnInterrupt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at a batch end once Ctrl-C was pressed (`watch_interrupts`)."""

    def on_train_batch_end(self, batch, logs=None):
        if _interrupted.is_set():
            raise KeyboardInterrupt


class ProgressSaver(keras.callbacks.Callback):
    """Saves a checkpoint with the run's record every `every_steps` steps and at each epoch
    end; keeps `interrupted_at()` current.

    first_step: the steps of the epoch done before this fit (a resumed epoch's fit starts
    there); steps are counted from the epoch's start.
    """

    def __init__(
        self,
        phase: str,
        state: RunState,
        checkpoints: RunCheckpoints,
        every_steps: int = 0,
        first_step: int = 0,
    ):
        super().__init__()
        self.phase = phase
        self.state = state
        self.checkpoints = checkpoints
        self.every_steps = every_steps
        self.first_step = first_step
        self.epoch = 0

    def _save(self, epochs_done: int, step: int) -> None:
        self.state.in_phase(self.phase, epochs_done, step)
        self.checkpoints.save(self.state)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        note_position(f"{self.phase}, epoch {self.epoch + 1}, step {self.first_step + batch + 1}")

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        if self.every_steps and step % self.every_steps == 0:
            self._save(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self.state.record_epoch(logs or {})
        self._save(epoch + 1, 0)
        note_position(f"{self.phase}, after epoch {epoch + 1}")
        self.first_step = 0  # the next epoch of this fit starts at its first step


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises TrainingDiverged on the first NaN or infinite loss, before that step is saved.

    hint: what to do, the end of the message (`phases.diverged_hint`).
    """

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
                f"{self.first_step + batch + 1} and nothing was exported; {self.hint}"
            )


def interrupted_line(command: str) -> str:
    """The one line printed on Ctrl-C: where the run was and how to go on."""
    where = interrupted_at()
    if command == "train" and where:
        return f"interrupted in {where}; rerun the same command to resume"
    if command in ("train", "pretrain", "demo"):
        return "interrupted; rerun the same command to go on"
    return "interrupted"


class RunProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar (or line per epoch), with epochs counted over the whole run: phase 2
    goes on from phase 1's count and a resumed epoch's fit says "Epoch 3/4", not "Epoch 3/3" —
    the numbering of history.csv and TensorBoard."""

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard logging with epochs numbered from 1, as the console counts them."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)
