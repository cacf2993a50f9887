"""The end of a `train` run: the test evaluation after each phase, then calibration, the
final weights, the report, the export and metrics.json, and the run marked complete.

It works on the `Run` the phases advanced; the pieces it strings together (test metrics,
thresholds, the export) are `sft_tf.training.outcome`'s, which other commands use too.
"""

from __future__ import annotations

import copy

from sft_tf import timing
from sft_tf.distribute import workers
from sft_tf.files import save_weights_atomic, write_json_atomic
from sft_tf.log import say
from sft_tf.serving import export, variants
from sft_tf.training import callbacks as callbacks_lib
from sft_tf.training import outcome
from sft_tf.training.layout import WEIGHTS_FILE
from sft_tf.training.run import Run


def evaluate_test(run: Run) -> dict | None:
    """The test metrics of the run's model now (None without a test split); a multi-label
    model's at thresholds tuned on the validation split now."""
    if run.test is None:
        return None
    with timing.stage("test evaluations"):
        thresholds = outcome.tune_thresholds(run.model, run.config, run.validation)
        probabilities = outcome.predict(run.model, run.config, run.test, run.pipelines.test_ds)
        # Kept for the end of the run while the weights stay as they are (`Run.test_predictions`).
        run.test_predictions, run.test_thresholds = probabilities, thresholds
        return outcome.test_metrics(
            run.model,
            run.config,
            run.test,
            run.class_names,
            thresholds=thresholds,
            probabilities=probabilities,
        )


def finish(run: Run) -> dict:
    """After training: calibration, the final weights, report, export, metrics.json; marks the
    run complete. Returns the metrics."""
    config, workdir, metrics = run.config, run.workdir, run.state.metrics
    chief = workers.is_chief(run.strategy)
    callbacks_lib.note_position("evaluation and export, after training")
    if config.export.calibrate and run.validation is not None:
        metrics["calibration"] = outcome.calibrate(run.model, config, run.validation)
    model = outcome.served(run.model, metrics)
    if run.test_predictions is not None:  # tuned for these weights by the last evaluation
        thresholds = run.test_thresholds
    else:
        thresholds = outcome.tune_thresholds(run.model, config, run.validation)
    if thresholds is not None:
        metrics["thresholds"] = {n: round(float(t), 4) for n, t in zip(run.class_names, thresholds)}
    save_weights_atomic(run.model, workdir / WEIGHTS_FILE)
    # Workers that stayed in sync print the same digest (the multi-worker test compares them).
    say(f"Final weights sha256 {workers.weights_digest(run.model.weights)}")
    write_json_atomic(workdir / "history.json", run.state.history)
    for phase in ("phase1", "phase2"):
        if phase in metrics and metrics[phase]["test"]:
            say(outcome.headline(metrics[phase]["test"], phase))
    if run.test is not None and chief:
        with timing.stage("report"):
            _final_report(run, model, thresholds)
    if config.export.dir:
        # Every worker exports: the export's check runs model.predict, whose collectives all
        # workers must join. Other workers export into their scratch dir, deleted below.
        export_config = config
        if not chief:
            export_config = copy.deepcopy(config)
            export_config.export.dir = str(workdir / "saved_models")
        with timing.stage("export"):
            path = outcome.export_model(
                export_config,
                model,
                run.class_names,
                metrics,
                thresholds,
                run.train,
                run.validation,
                run.test,
            )
        metrics["export"] = str(path)
        report = workdir / "report" / "report.md"
        if chief and report.is_file():
            rows = export.read_manifest(path).get("variants", [])
            with report.open("a") as f:
                f.write(f"\n## Deployment variants ({path})\n\n{variants.table(rows)}\n")
    metrics["timing"] = timing.current().summary()
    say(timing.current().line())
    write_json_atomic(workdir / "metrics.json", metrics)
    run.state.mark_complete(metrics)
    run.state.save(workdir)
    workers.remove_scratch(workdir, run.strategy)
    return metrics


def _final_report(run: Run, model, thresholds) -> None:
    """The evaluation report of the final model, with the curves of both phases."""
    config, metrics = run.config, run.state.metrics
    # The curves mark where phase 2 starts: after phase 1's epochs (fewer on early stopping).
    phase1_epochs = metrics.get("phase1", {}).get("epochs_run", config.phase1.epochs)
    switch = phase1_epochs if config.phase2.epochs else None
    folder = run.workdir / "report"
    # The last test evaluation's predictions are this model's unless a temperature wraps it.
    known = run.test_predictions if model is run.model else None
    outcome.write_report(
        model,
        config,
        run.test,
        folder,
        run.state.history,
        switch,
        run.pipelines.test_ds,
        thresholds,
        probabilities=known,
    )
    say(f"Evaluation report: {folder / 'report.md'}")
