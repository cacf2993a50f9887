"""`sft-tf evaluate`: test metrics and the report of a workdir's model, or of an export."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
import numpy as np

from sft_tf.data import examples as examples_lib
from sft_tf.errors import UserError
from sft_tf.evaluation import inference
from sft_tf.evaluation import metrics as metrics_lib
from sft_tf.evaluation import multilabel as multilabel_lib
from sft_tf.files import write_json_atomic
from sft_tf.serving import export
from sft_tf.serving import predict as predict_lib
from sft_tf.training import outcome, trained
from sft_tf.training.inputs import load_split, load_target_splits, make_dataset
from sft_tf.training.outcome import saved_metrics, served, write_report
from sft_tf.training.screening import decoded_to_keep, screen_splits


def evaluate_workdir(workdir: str | Path) -> dict:
    """Evaluates a workdir's trained model on its config's test split; writes evaluation.json."""
    config, model, class_names = trained.load_trained(workdir)
    model = served(model, saved_metrics(workdir))
    _, _, test = load_target_splits(config)
    if test is None:
        raise UserError("config.data.test is empty; set it to evaluate")
    history_path = Path(workdir) / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else None
    p1, p2 = config.phase1, config.phase2
    metrics = write_report(
        model,
        config,
        test,
        Path(workdir) / "report",
        history,
        p1.epochs if p2.epochs else None,
        thresholds=outcome.saved_thresholds(saved_metrics(workdir), class_names),
    )
    write_json_atomic(Path(workdir) / "evaluation.json", metrics)
    return metrics


def evaluate_export(export_dir: str | Path, config: ml_collections.ConfigDict) -> dict:
    """Evaluates an exported SavedModel (its serving_images signature) on config.data.test.

    The export's manifest says whether it is multi-label (the test labels are then read as
    sets, whatever config.data.multi_label says) and holds its thresholds.
    """
    serve = predict_lib.load_signature(export_dir, "serving_images")
    manifest = export.read_manifest(export_dir)
    multi_label = bool(manifest.get("multi_label"))
    d = config.data
    test = load_split(d.test, "config.data.test", d.classes, "config.data.classes", d, multi_label)
    if test is None:
        raise UserError("config.data.test is empty; set it to evaluate")
    keep = decoded_to_keep(config)
    size = config.model.image_size
    test = screen_splits(
        {"test": test}, d.on_bad_image, d.max_image_pixels, keep=keep, image_size=size
    )["test"]
    examples_lib.check_same_classes(
        export.read_class_names(export_dir), test, "config.data.test", f"the export {export_dir}"
    )
    probabilities, labels = inference.collect_predictions(
        lambda images: serve(images=images)["probabilities"].numpy(),
        make_dataset(config, test, training=False, one_hot=False),
    )
    if multi_label:
        thresholds = np.asarray([manifest["thresholds"][name] for name in test.class_names])
        return multilabel_lib.multilabel_metrics(
            probabilities, labels, list(test.class_names), thresholds
        )
    return metrics_lib.classification_metrics(
        probabilities, labels, list(test.class_names), top_k=config.export.top_k
    )


def main(workdir: str | None, model: str | None, version: int | None, config) -> int:
    """Evaluates the export `model` (on `config()`'s test split) or a workdir's model; prints
    the metrics as JSON."""
    if model:
        metrics = evaluate_export(export.resolve_export(model, version), config())
    elif workdir:
        metrics = evaluate_workdir(workdir)
    else:
        raise UserError("`sft-tf evaluate` needs --workdir or --model")
    print(json.dumps({k: v for k, v in metrics.items() if k != "confusion_matrix"}, indent=2))
    return 0
