"""Where a run is: `RunState`, the one owner of `<workdir>/state.json`.

A run can be killed at any moment and rerun with the same command. Each checkpoint
(`sft_tf.training.checkpoints`) is written with a copy of the state that describes it,
`checkpoints/ckpt-N.state.json`, and then `state.json` itself, so state.json never names a
checkpoint that is not on disk. A resume (`sft_tf.training.resume`) verifies the checkpoint
state.json names and, when it cannot be read, goes back to an older kept checkpoint and its
record; it never restarts a phase silently. This module loads no TensorFlow: the CLI asks it
whether a run is finished before TensorFlow's import.

A resumed run continues exactly where the checkpoint left off: the checkpoint holds the
weights, the optimizer (its step count drives the learning-rate schedule) and the random state
of layers such as Dropout, and the training stream gives the remaining batches of the
interrupted epoch (`sft_tf.data.pipeline.epoch_stream`); nothing is trained twice.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import ml_collections

from sft_tf.config import files as config_files
from sft_tf.config import schema
from sft_tf.errors import UserError
from sft_tf.files import write_json_atomic, write_text_atomic
from sft_tf.lock import LOCK_FILE, WorkdirLock
from sft_tf.log import say
from sft_tf.training.layout import CONFIG_FILE, STATE_FILE

HISTORY_CSV = "history.csv"
PHASES = ("phase1", "phase2", "trained")
# Config fields that do not change what is trained: a resumed run may differ in these.
RESUME_FREE = (
    "name",
    "export.",
    "data.test",
    "runtime.strategy",
    "runtime.tpu",
    "runtime.checkpoint_every_steps",
    # Not runtime.deterministic: on CPU too, a run with op determinism ends with other weights
    # than one without (the same tiny run, sha256 4296c9ad... vs 19cb87dd...), so switching
    # it on a resume would give a model neither run would have trained.
    "phase2.cache_frozen",  # the same training either way (within float rounding)
)
# The fields `sft-tf export --workdir=DIR` may set for the version it writes (the rest of
# DIR/config.json is what was trained); export.calibrate is not one: it is fitted in training.
EXPORT_FIELDS = ("name", "export.")


@dataclasses.dataclass
class RunState:
    """The run's record; state.json is this, as JSON.

    Attributes:
      phase: what runs next: "phase1", "phase2", or "trained" (evaluation and export are left).
      epochs_done: epochs finished, counted over both phases.
      mid_epoch_step: steps of the next epoch already in the checkpoint (0: at an epoch end).
      checkpoint_phase: the phase that wrote the checkpoint; its optimizer is restored only by
        that same phase.
      checkpoint: the checkpoint this record describes ("ckpt-7"; None before the first).
      history: per-epoch training and validation metrics, every epoch of both phases.
      metrics: the test metrics so far, the class names and, at the end, the export.
      complete: the run finished, export included.
    """

    phase: str = "phase1"
    epochs_done: int = 0
    mid_epoch_step: int = 0
    checkpoint_phase: str = "phase1"
    checkpoint: str | None = None
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)
    complete: bool = False

    @classmethod
    def from_dict(cls, value: dict) -> RunState:
        """Reads a record, also one written by an earlier sft_tf (fields it lacks get their
        defaults, fields this version does not know are ignored).

        Raises:
          ValueError: `value` is not a run record.
        """
        if not isinstance(value, dict) or value.get("phase") not in PHASES:
            raise ValueError("not a run record (no phase)")
        known = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in value.items() if k in known})
        if "checkpoint_phase" not in value:
            state.checkpoint_phase = state.phase
        return state

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, workdir: Path) -> None:
        """Writes state.json (temp file + rename) and the history CSV."""
        write_json_atomic(Path(workdir) / STATE_FILE, self.to_dict())
        if self.history:
            write_history_csv(Path(workdir) / HISTORY_CSV, self.history, self.epoch_rows())

    def epoch_rows(self) -> list[tuple[int, str]]:
        """(epoch, phase) of each history entry, epochs counted over the run from 1 as the
        console and TensorBoard count them (phase 2's first epoch is phase1.epochs + 1, also
        when early stopping ended phase 1 sooner)."""
        rows = max((len(v) for v in self.history.values()), default=0)
        phase1 = self.metrics.get("phase1")
        if phase1 is None:  # still in phase 1, or a run without one
            in_phase1, phase2_start = (rows if self.phase == "phase1" else 0), 0
        else:  # records of earlier versions lack epochs_run: no early stopping then
            in_phase1, phase2_start = phase1.get("epochs_run", phase1["epochs"]), phase1["epochs"]
        return [
            (i + 1, "phase1") if i < in_phase1 else (phase2_start + i - in_phase1 + 1, "phase2")
            for i in range(rows)
        ]

    # --- Transitions: the only ways a run's record changes -----------------------------------

    def record_epoch(self, logs: dict) -> None:
        """An epoch's training and validation metrics, appended to the history."""
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def record_history(self, history: dict[str, list[float]]) -> None:
        """Several epochs' metrics at once (phase 1 on cached features fits in one go)."""
        for key, values in history.items():
            self.history.setdefault(key, []).extend(float(v) for v in values)

    def in_phase(self, phase: str, epochs_done: int, step: int) -> None:
        """`phase` is under way: `epochs_done` epochs finished and `step` steps of the next
        (what a checkpoint written now holds, with this phase's optimizer)."""
        self.phase = self.checkpoint_phase = phase
        self.epochs_done, self.mid_epoch_step = epochs_done, step

    def finish_phase(self, phase: str, results: dict, epochs_done: int) -> None:
        """`phase` ended after `epochs_done` epochs of the run, with `results` (its epochs,
        test metrics, ...): the run moves to the next phase, or to "trained" after phase 2.
        The checkpoint written next holds phase 1's optimizer, which phase 2 does not restore."""
        self.metrics[phase] = results
        self.phase = "phase2" if phase == "phase1" else "trained"
        self.checkpoint_phase = "phase1" if phase == "phase1" else "trained"
        self.epochs_done, self.mid_epoch_step = epochs_done, 0

    def trained_without_phase2(self) -> None:
        """phase2.epochs=0: phase 1's last checkpoint is the trained model."""
        self.phase = "trained"

    def at_checkpoint(self, name: str) -> None:
        """From now on this record describes checkpoint `name` (written just before)."""
        self.checkpoint = name

    def warn(self, warning: str) -> bool:
        """Adds `warning` to metrics.json's "warnings" once; False if it was there already."""
        warnings = self.metrics.setdefault("warnings", [])
        if warning in warnings:
            return False
        warnings.append(warning)
        return True

    def mark_complete(self, metrics: dict) -> None:
        """Training, evaluation and export are done; `metrics` is what metrics.json holds."""
        self.metrics = metrics
        self.complete = True

    # --- Questions ----------------------------------------------------------------------------

    def snapshot(self) -> RunStart:
        """Where this process began: a frozen copy that training cannot move."""
        return RunStart(
            self.phase,
            self.epochs_done,
            self.mid_epoch_step,
            self.checkpoint_phase,
            self.checkpoint,
        )

    def position(self, phase: str, first_epoch: int) -> tuple[int, int]:
        """Where `phase`, whose first epoch is `first_epoch`, starts: (epochs done, steps done
        of the next epoch). Its beginning unless this record is from the middle of it."""
        return _position(self, phase, first_epoch)

    def restores_optimizer(self) -> bool:
        """Whether the checkpoint's optimizer belongs to the phase that resumes from it."""
        return self.checkpoint_phase == self.phase

    def describe(self) -> str:
        where = f"{self.phase} after {self.epochs_done} finished epoch(s)"
        if self.mid_epoch_step:
            where += f" and step {self.mid_epoch_step} of the next"
        return where


@dataclasses.dataclass(frozen=True)
class RunStart:
    """Where a process began the run (`RunState.snapshot`): which checkpoint to restore into
    which phase, and where that phase continues. Frozen: the run's own record moves on."""

    phase: str
    epochs_done: int
    mid_epoch_step: int
    checkpoint_phase: str
    checkpoint: str | None

    def position(self, phase: str, first_epoch: int) -> tuple[int, int]:
        """As `RunState.position`."""
        return _position(self, phase, first_epoch)

    def restores_optimizer(self) -> bool:
        """Whether the checkpoint's optimizer belongs to the phase that resumes from it."""
        return self.checkpoint_phase == self.phase


def _position(record: RunState | RunStart, phase: str, first_epoch: int) -> tuple[int, int]:
    if record.phase != phase or record.checkpoint is None:
        return first_epoch, 0
    return record.epochs_done, record.mid_epoch_step


def read_record(path: Path) -> tuple[RunState | None, str | None]:
    """(record, None), or (None, why it cannot be used); (None, None) when there is no file."""
    if not path.is_file():
        return None, None
    try:
        return RunState.from_dict(json.loads(path.read_text())), None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        return None, f"{path.name} cannot be read ({e})"


def write_history_csv(
    path: Path, history: dict[str, list[float]], rows: list[tuple[int, str]]
) -> None:
    """history.csv from the run's record: one row per finished epoch, whatever was resumed.

    Written whole from the record rather than appended to by Keras's CSVLogger, which repeated
    the rows of an epoch that a resume trained again. Columns: epoch (from 1, over the whole
    run), phase, then the metrics in name order ("NA" where an epoch has no value).

    Args:
      rows: (epoch, phase) of each entry (`RunState.epoch_rows`).
    """
    keys = sorted(history)
    lines = [",".join(["epoch", "phase", *keys])]
    for i, (epoch, phase) in enumerate(rows):
        cells = [repr(history[k][i]) if i < len(history[k]) else "NA" for k in keys]
        lines.append(",".join([str(epoch), phase, *cells]))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(workdir: Path, config: ml_collections.ConfigDict) -> list[str]:
    """The training-relevant fields in which `config` differs from the run in `workdir`."""
    return [
        _described(*difference)
        for difference in config_differences(workdir, config)
        if not difference[0].startswith(RESUME_FREE)
    ]


def _described(key: str, old: Any, new: Any) -> str:
    return f"{key} ({old!r} -> {new!r})"


def config_differences(
    workdir: Path, config: ml_collections.ConfigDict, only: tuple[str, ...] = ()
) -> list[tuple[str, Any, Any]]:
    """(field, the run's value, `config`'s value) for every field in which they differ, in
    field order; with `only`, just the fields starting with one of those prefixes."""
    path = Path(workdir) / CONFIG_FILE
    try:
        saved = _flatten(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path} cannot be read ({e}); rerun with --restart to move the run aside and start "
            "over, or use a new --workdir"
        ) from e
    current = _flatten(config_files.to_dict(config))
    # A field added by a newer sft_tf is missing from an older run's config.json: it counts
    # as unchanged while it keeps its default.
    defaults = _flatten(config_files.to_dict(schema.base_config()))
    saved = {**{k: defaults[k] for k in current.keys() - saved.keys() if k in defaults}, **saved}
    # A key no schema field has (a typo an earlier version let through): it had no effect.
    saved = {k: v for k, v in saved.items() if k in defaults}
    return [
        (key, saved.get(key), current.get(key))
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key) and key.startswith(only or ("",))
    ]


def finished_run(workdir: Path, config: ml_collections.ConfigDict) -> RunState | None:
    """The complete run in `workdir` (export included) when `config` trains that same run;
    None when `workdir` holds no complete run (it is started or resumed).

    Needs no TensorFlow: the CLI asks before TensorFlow loads, so rerunning a finished command
    answers at once.

    Raises:
      UserError: the run is complete but was trained with another config.
    """
    state, _ = read_record(Path(workdir) / STATE_FILE)
    if state is None or not state.complete:
        return None
    refuse_changed_finished_run(workdir, config)
    return state


def announce_finished_run(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """What `train` says when its workdir holds the complete run it was asked for; and, when
    `config` asks for other export settings than the run was exported with, how to get them
    (a finished run is not exported again by `train`)."""
    say(f"{workdir} holds a complete run (--restart trains again); its metrics are kept")
    changed = config_differences(Path(workdir), config, only=EXPORT_FIELDS)
    if not changed:
        return
    if any(key == "export.calibrate" for key, _, _ in changed):  # fitted when training ends
        fix = "export.calibrate takes effect when training ends: --restart trains again with it"
    else:
        overrides = " ".join(f"--config.{key}={new}" for key, _, new in changed)
        fix = f"a new version with these: sft-tf export --workdir={workdir} {overrides}"
    listed = "; ".join(_described(*difference) for difference in changed)
    say(f"It was exported with other settings ({listed}); {fix}")


def refuse_changed_finished_run(workdir: Path, config: ml_collections.ConfigDict) -> None:
    changed = config_changes(workdir, config)
    if changed:
        raise UserError(
            f"{workdir} holds a complete run trained with another config: "
            f"{'; '.join(changed)}. Rerun with --restart to train again with this config (the "
            "finished run is moved aside), or use a new --workdir"
        )


def move_aside(workdir: Path, lock: WorkdirLock) -> None:
    """--restart: renames an earlier run to <workdir>.old-<time>; the lock stays with us."""
    if not any(p.name != LOCK_FILE for p in workdir.iterdir()):
        return
    aside = workdir.with_name(f"{workdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    workdir.rename(aside)
    lock.release()  # its file went along with the old run
    lock.acquire(workdir)
    (aside / LOCK_FILE).unlink(missing_ok=True)
    say(f"--restart: moved the earlier run to {aside}")
