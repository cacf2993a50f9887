"""`sft-tf train`: fine-tune in two phases, evaluate, export.

Phase 1 trains the new head on a frozen base; phase 2 opens the base's top blocks and continues
at a lower learning rate; then the test split is evaluated and the model exported. Rerun on the
workdir of an interrupted run, it resumes where the run stopped, bit for bit.

`run` reads as the table of contents: runtime -> inputs -> state -> model -> workdir ->
phase 1 -> phase 2 -> outcome. Every check that can fail on the user's input runs before the
workdir is touched.
"""

from __future__ import annotations

from pathlib import Path

import keras
import ml_collections

from sft_tf import timing
from sft_tf.config import files as config_files
from sft_tf.distribute import workers
from sft_tf.lock import WorkdirLock
from sft_tf.training import callbacks as callbacks_lib
from sft_tf.training import inputs, outcome, phases, recipe, resume, runtime
from sft_tf.training import state as state_lib
from sft_tf.training.checkpoints import RunCheckpoints
from sft_tf.training.finish import finish
from sft_tf.training.layout import CONFIG_FILE, LABELS_FILE
from sft_tf.training.run import Run


def run(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    restart: bool = False,
    allow_config_change: bool = False,
) -> dict:
    """Fine-tunes, evaluates and exports; returns the metrics written to metrics.json.

    On the workdir of an interrupted run it resumes from the last checkpoint; on a complete run
    with the same config it only reports that. One process at a time works in a workdir.

    Args:
      config: a validated config.
      workdir: where config.json, logs, history, weights, checkpoints and metrics go.
      restart: move an existing run in `workdir` aside (to <workdir>.old-<time>) and start over.
      allow_config_change: resume even if the config differs from the interrupted run's.

    Returns:
      The metrics dict (also written to <workdir>/metrics.json).

    Raises:
      UserError: bad input (nothing written then), a locked workdir, a changed config, a run
        that cannot be resumed, or a loss that became NaN.
    """
    callbacks_lib.watch_interrupts()
    timing.start()
    lock = WorkdirLock()
    try:
        return _run(config, Path(workdir), lock, restart, allow_config_change)
    finally:
        lock.release()


def _run(config, workdir: Path, lock: WorkdirLock, restart: bool, allow_change: bool) -> dict:
    # --- Runtime (first: multi-worker collectives must be set up before any TF op runs) -------
    strategy, compile_options = runtime.build_runtime(config)
    # Every worker runs all of what follows; only the chief's files are kept (output_dir).
    workdir = workers.output_dir(workdir, strategy)
    lock.acquire(workdir, create=False)  # an existing workdir: refuse now if a run has it

    # --- Inputs (checked before the workdir is touched) ----------------------------------------
    train, validation, test = _load_inputs(config)

    # --- State: a fresh run, an interrupted one to resume, or a finished one ------------------
    resumed = None if restart else resume.check_resume(workdir, config, allow_change)
    if resumed is not None and resumed.complete:
        state_lib.announce_finished_run(workdir, config)
        return resumed.metrics
    keras.utils.set_random_seed(config.seed)
    inputs.describe_splits("Data:", train=train, validation=validation, test=test)
    pipelines = inputs.build_pipelines(config, strategy, train, validation, test)

    # --- Model (a bad weights file stops here, before the workdir is touched) -----------------
    with timing.stage("model"), strategy.scope():
        model = recipe.build_model(
            config, len(train.class_names), config.model.weights, config.phase2.batchnorm
        )
    workers.allow_multi_worker_fit(model, strategy)

    # --- The workdir: from here on, files are written ------------------------------------------
    _prepare_workdir(config, workdir, lock, restart, train.class_names)
    state = resumed or state_lib.RunState(
        metrics={"classes": list(train.class_names), "train_examples": len(train)}
    )
    training = Run(
        config=config,
        workdir=workdir,
        strategy=strategy,
        compile_options=compile_options,
        train=train,
        validation=validation,
        test=test,
        pipelines=pipelines,
        model=model,
        checkpoints=RunCheckpoints(workdir, model),
        state=state,
        started=state.snapshot(),
    )

    # --- Phase 1 (the head on a frozen base), phase 2 (the top blocks open, a lower rate) ------
    _train_phases(config, training)

    # --- Outcome: calibrate, evaluate, report, export ------------------------------------------
    return finish(training)


def _load_inputs(config) -> tuple:
    """The train, validation and test splits, checked before the workdir is touched."""
    with timing.stage("data (listing, scan)"):
        train, validation, test = inputs.load_target_splits(config)
        inputs.check_batch_fits(train, config.data.global_batch_size, "the training split")
        outcome.check_export_name(config, train.class_names)  # now, not after training
    return train, validation, test


def _train_phases(config, training: Run) -> None:
    if config.phase1.epochs and training.started.phase == "phase1":
        with timing.stage("phase 1"):
            phases.train_phase1(training)
    if config.phase2.epochs:
        with timing.stage("phase 2"):
            phases.train_phase2(training)
    else:
        phases.finish_phase1_only(training)


def _prepare_workdir(config, workdir: Path, lock: WorkdirLock, restart: bool, class_names):
    """Takes the workdir (moving an earlier run aside on --restart); writes config and labels."""
    lock.acquire(workdir)
    if restart:
        state_lib.move_aside(workdir, lock)
    config_files.save(config, workdir / CONFIG_FILE)
    (workdir / LABELS_FILE).write_text("\n".join(class_names) + "\n")
