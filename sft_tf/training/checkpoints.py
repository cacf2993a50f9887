"""Numbered checkpoints of the model and its optimizer, each with the run's record beside it.

`checkpoints/ckpt-N` holds the weights, the current phase's optimizer and the layers' random
state, written at every epoch end and every `runtime.checkpoint_every_steps` steps; the newest
two are kept, each with `ckpt-N.state.json`, the `RunState` that describes it
(`sft_tf.training.resume` reads them back and chooses which to resume from).

Keras's BackupAndRestore is not used: it deletes its backup at the end of every fit() (and a
two-phase run calls fit twice), and replays an interrupted epoch from batch 0 silently.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from sft_tf.files import write_json_atomic
from sft_tf.training.layout import CHECKPOINT_DIR, checkpoint_numbers, record_path
from sft_tf.training.state import RunState


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


def legacy_checkpoint(directory: Path) -> str | None:
    """The checkpoint a state.json written before sft_tf named it describes: the newest in the
    CheckpointManager index file (`checkpoints/checkpoint`), which runs then kept."""
    try:
        path = tf.train.latest_checkpoint(str(directory))
    except (tf.errors.OpError, ValueError):
        return None
    return Path(path).name if path else None


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

    def track(self, model: keras.Model, trainee: keras.Model | None = None) -> None:
        """Follows `model` with its newly compiled optimizer (call after each compile).

        trainee: the part of `model` that was compiled and is fitted, when not the whole
        (phase 2 on cached activations). Its optimizer is built over the whole model's
        trainable variables, in the whole model's order: the same variables (the trainee's
        layers are the model's), so its slots sit where the uncached run's would, and a
        checkpoint of either resumes in the other.
        """
        self.model = model
        optimizer = (trainee or model).optimizer
        # Optimizer slots must exist before a restore can fill them.
        optimizer.build(model.trainable_variables)
        # The weights as a plain list, not the model: a Keras model tracks its compiled
        # optimizer, which would drag phase 1's optimizer into phase 2's restore.
        self.checkpoint = tf.train.Checkpoint(**self._model_state(), optimizer=optimizer)

    def save(self, state: RunState) -> None:
        """Writes a checkpoint, then `state` (which from then on names it) beside it and as
        state.json, then drops the checkpoints past `keep`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = checkpoint_numbers(self.directory)
        name = f"ckpt-{(numbers[0] if numbers else 0) + 1}"
        self.checkpoint.write(str(self.directory / name))
        state.at_checkpoint(name)
        write_json_atomic(record_path(self.directory, name), state.to_dict())
        state.save(self.workdir)
        for number in checkpoint_numbers(self.directory)[self.keep :]:
            for path in self.directory.glob(f"ckpt-{number}.*"):
                path.unlink(missing_ok=True)

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
