"""`sft-tf export`: (re)export a workdir's model as the next version."""

from __future__ import annotations

from pathlib import Path

import ml_collections

from sft_tf.errors import UserError
from sft_tf.files import write_json_atomic
from sft_tf.lock import WorkdirLock
from sft_tf.log import say
from sft_tf.serving import onnx_export
from sft_tf.training import outcome, trained
from sft_tf.training import state as state_lib
from sft_tf.training.inputs import load_target_splits
from sft_tf.training.outcome import export_model, saved_metrics, served
from sft_tf.training.state import EXPORT_FIELDS


def export_workdir(workdir: str | Path, settings: ml_collections.ConfigDict | None = None) -> Path:
    """(Re)exports a workdir's model as the next version under its export root.

    Works on a finished run and on an interrupted one, whose newest checkpoint (epoch end or
    `runtime.checkpoint_every_steps`) is what gets exported (`trained.load_trained`). Refused
    while another process works in the workdir.

    Args:
      workdir: the run.
      settings: the run's config with the command line's `--config.name` and
        `--config.export.*` overrides (`config.flags.export_overrides`); its name and export
        fields are this version's. None: the run's own.
    """
    lock = WorkdirLock()
    try:
        lock.acquire(workdir, create=False)
        return _export_workdir(workdir, settings)
    finally:
        lock.release()


def _apply_settings(workdir: str | Path, config: ml_collections.ConfigDict, settings) -> None:
    """This version's name and export fields; config.json keeps the run's."""
    if settings is None:
        return
    changed = state_lib.config_differences(Path(workdir), settings, only=EXPORT_FIELDS)
    config.name = settings.name
    config.export.update(settings.export.to_dict())
    if changed:
        listed = ", ".join(f"{key}={new!r}" for key, _, new in changed)
        say(f"This version's export settings: {listed} (config.json is unchanged)")
    if config.export.onnx and config.export.dir:
        onnx_export.check_installed("config.export.onnx=true")


def _export_workdir(workdir: str | Path, settings) -> Path:
    config, model, class_names = trained.load_trained(workdir)
    _apply_settings(workdir, config, settings)
    if not config.export.dir:
        raise UserError(
            "config.export.dir is empty, so there is nowhere to export to; give one with "
            "--config.export.dir=saved_models"
        )
    metrics = saved_metrics(workdir)
    train = validation = test = None
    try:  # real images for the parity check and the variants when the data is still there
        train, validation, test = load_target_splits(config)
    except UserError as e:
        say(f"Data unavailable ({e}); checking the export on synthetic images")
    # A finished run's thresholds; an interrupted one's are tuned now (0.5 without data).
    thresholds = outcome.saved_thresholds(metrics, class_names)
    if thresholds is None:
        thresholds = outcome.tune_thresholds(model, config, validation)
    path = export_model(
        config, served(model, metrics), class_names, metrics, thresholds, train, validation, test
    )
    if metrics:  # a finished run: `predict --workdir` follows its newest export from now on
        metrics["export"] = str(path)
        write_json_atomic(Path(workdir) / "metrics.json", metrics)
    return path
