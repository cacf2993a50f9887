"""Where a rerun of `sft-tf train` starts: the checkpoint to resume from, verified readable
(`resume_point`), and whether the config may resume it (`check_resume`).

It reads the run's records (`sft_tf.training.state`) and tests the checkpoints they name
(`sft_tf.training.checkpoints`, which needs TensorFlow); neither of those imports this
module, so the state/checkpoint modules form no circle.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

from sft_tf.errors import UserError
from sft_tf.log import say
from sft_tf.training import layout
from sft_tf.training import state as state_lib
from sft_tf.training.checkpoints import legacy_checkpoint, unreadable
from sft_tf.training.state import RunState, read_record


def resume_point(workdir: Path) -> RunState | None:
    """Where an interrupted run in `workdir` got to, its checkpoint verified readable.

    state.json names the checkpoint it describes. When that checkpoint is missing or cannot
    be read, the run goes back to the newest kept checkpoint that can, with the record written
    beside it, and says so. A state.json written before checkpoints were named describes the
    newest checkpoint in tf.train.CheckpointManager's index file.

    Returns:
      The record to resume from, or None when `workdir` holds no run.

    Raises:
      UserError: there is a run, but no checkpoint of it can be restored.
    """
    workdir = Path(workdir)
    directory = workdir / layout.CHECKPOINT_DIR
    state, problem = read_record(workdir / layout.STATE_FILE)
    if state is not None and state.complete:
        return state
    names = layout.checkpoint_names(directory)
    if state is None and problem is None and not names:
        return None  # nothing was saved yet: a fresh start loses nothing
    candidates = []
    if state is not None:
        state.checkpoint = state.checkpoint or legacy_checkpoint(directory)
        candidates.append(state)
    for name in names:
        record, _ = read_record(layout.record_path(directory, name))
        if record is not None and record not in candidates:
            candidates.append(record)
    failures = [problem] if problem else []
    for candidate in candidates:
        name = candidate.checkpoint
        reason = unreadable(directory / name) if name else "no checkpoint named"
        if reason is None:
            if failures:
                say(
                    f"Warning: {'; '.join(failures)}. Resuming from checkpoint {name} instead: "
                    f"{candidate.describe()}"
                )
            return candidate
        failures.append(f"checkpoint {name or '?'}: {reason}")
    raise UserError(
        f"cannot resume the run in {workdir}: {'; '.join(failures) or 'no checkpoint'}. Rerun "
        "with --restart to move it aside and start over, or use a new --workdir"
    )


def check_resume(
    workdir: Path, config: ml_collections.ConfigDict, allow_config_change: bool
) -> RunState | None:
    """The interrupted (or finished) run in `workdir` to continue from; None to start fresh.

    Reads only (`--restart` moves the old run aside later, once every check has passed).

    Raises:
      UserError: the config differs from the run's in fields that affect training (for a
        finished run always, for an interrupted one unless allowed), or the run's checkpoints
        cannot be restored.
    """
    state = resume_point(workdir)
    if state is None:
        return None
    if state.complete:
        state_lib.refuse_changed_finished_run(workdir, config)
        return state
    changed = state_lib.config_changes(workdir, config)
    if changed:
        if not allow_config_change:
            raise UserError(
                f"the config differs from the interrupted run in {workdir}: "
                f"{'; '.join(changed)}. Rerun with the same config, add --allow_config_change "
                "to continue anyway, or --restart to start over"
            )
        say(f"Resuming with a changed config (--allow_config_change): {'; '.join(changed)}")
    return state
