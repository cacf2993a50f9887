"""What a trained model produces, for `train` and the commands that read a run (evaluate,
export, pretrain): test metrics, thresholds, the temperature, the evaluation report, the
export. The end of a `train` run itself, which strings these together, is
`sft_tf.training.finish`.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import ml_collections
import numpy as np

from sft_tf.config.files import digest
from sft_tf.data import examples as examples_lib
from sft_tf.evaluation import inference
from sft_tf.evaluation import metrics as metrics_lib
from sft_tf.evaluation import multilabel as multilabel_lib
from sft_tf.log import say
from sft_tf.model import classifier
from sft_tf.serving import export
from sft_tf.training.inputs import make_dataset


def predict(model, config, examples: examples_lib.Examples, dataset=None) -> np.ndarray:
    """Class probabilities for every example, in order.

    dataset: `examples`' evaluation pipeline when the caller keeps one (its pixel cache then
    survives from one call to the next); built here otherwise.
    """
    ds = dataset or make_dataset(config, examples, training=False, one_hot=False)
    return inference.outputs(model, ds)[0]


def tune_thresholds(model, config, validation) -> np.ndarray | None:
    """A multi-label model's per-label thresholds, tuned for F1 on `validation` (0.5 each
    without one); None for a single-label model."""
    if not config.data.multi_label:
        return None
    if validation is None:
        return np.full(model.output_shape[-1], multilabel_lib.DEFAULT_THRESHOLD, np.float32)
    return multilabel_lib.tune_thresholds(predict(model, config, validation), validation.labels)


def headline(test: dict, phase: str) -> str:
    """The line quoting a phase's test score."""
    if test.get("multi_label"):
        return (
            f"Test mean average precision after {phase}: {test['mean_average_precision']:.4f} "
            f"(macro F1 {test['macro_f1']:.4f})"
        )
    return f"Test accuracy after {phase}: {test['accuracy']:.4f}"


def test_metrics(
    model, config, test, class_names, dataset=None, thresholds=None, probabilities=None
) -> dict | None:
    """Scores on `test` (None without one); a multi-label model's at `thresholds`.
    probabilities: the model's on `test` when the caller has them (predicted here otherwise)."""
    if test is None:
        return None
    if probabilities is None:
        probabilities = predict(model, config, test, dataset)
    if test.multi_label:
        return multilabel_lib.multilabel_metrics(
            probabilities, test.labels, class_names, thresholds
        )
    return metrics_lib.classification_metrics(
        probabilities,
        test.labels,
        class_names,
        top_k=config.export.top_k,
    )


def write_report(
    model,
    config,
    test: examples_lib.Examples,
    folder: Path,
    history=None,
    phase_switch=None,
    dataset=None,
    thresholds=None,
    probabilities=None,
) -> dict:
    """The evaluation report of `model` on `test` in `folder` (see evaluation/report.py, and
    evaluation/multilabel_report.py for a multi-label model, scored at `thresholds`);
    probabilities: the model's on `test` when the caller has them."""
    # Imported here: Matplotlib (~0.5 s) loads only for a report, not for every command that
    # uses this module (export, a refused or finished train).
    from sft_tf.evaluation import multilabel_report
    from sft_tf.evaluation import report as report_lib

    def load_images(indices):
        size, method = config.model.image_size, config.data.resize_method
        return examples_lib.decoded_images(test, indices, size, method)

    title = f"{config.name}: {config.model.backbone} on {test.origin}"
    if probabilities is None:
        probabilities = predict(model, config, test, dataset)
    if test.multi_label:
        if thresholds is None:
            thresholds = np.full(len(test.class_names), multilabel_lib.DEFAULT_THRESHOLD)
        return multilabel_report.write_multilabel_report(
            folder,
            probabilities,
            test.labels,
            list(test.class_names),
            load_images,
            thresholds,
            history=history,
            phase_switch=phase_switch,
            title=title,
        )
    metrics = report_lib.write_report(
        folder,
        probabilities,
        test.labels,
        list(test.class_names),
        load_images,
        history=history,
        phase_switch=phase_switch,
        top_k=config.export.top_k,
        title=title,
        files=test.names(),
    )
    return metrics


def calibrate(model, config, validation: examples_lib.Examples) -> dict:
    """Fits the temperature on validation data (export.calibrate); returns what it measured."""
    probabilities = predict(model, config, validation)
    temperature = round(metrics_lib.fit_temperature(probabilities, validation.labels), 4)
    scaled = metrics_lib.apply_temperature(probabilities, temperature)
    result = {"temperature": temperature, "validation_examples": len(validation)}
    for name, p in (("before", probabilities), ("after", scaled)):
        result[f"validation_nll_{name}"] = round(
            metrics_lib.negative_log_likelihood(p, validation.labels), 4
        )
        result[f"validation_ece_{name}"] = round(
            metrics_lib.calibration(p, validation.labels)[0], 4
        )
    say(
        f"Temperature scaling (export.calibrate): T={temperature} on {len(validation)} "
        f"validation images; NLL {result['validation_nll_before']} -> "
        f"{result['validation_nll_after']}, ECE {result['validation_ece_before']} -> "
        f"{result['validation_ece_after']}"
    )
    return result


def served(model: keras.Model, metrics: dict) -> keras.Model:
    """The model as evaluated and exported: with the fitted temperature, if there is one."""
    return classifier.with_temperature(model, metrics.get("calibration", {}).get("temperature"))


def saved_metrics(workdir: str | Path) -> dict:
    """metrics.json of a finished run ({} before the run finished)."""
    path = Path(workdir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def check_export_name(config: ml_collections.ConfigDict, class_names) -> None:
    """Refuses a run whose export would serve another label set under the same name."""
    if config.export.dir:
        export.check_class_change(
            Path(config.export.dir) / config.name, class_names, config.export.allow_class_change
        )


def _pixels(config, examples: examples_lib.Examples) -> np.ndarray:
    """Decoded, resized uint8 pixels of `examples`, as the evaluation pipeline makes them."""
    ds = make_dataset(config, examples, training=False, one_hot=False)
    return np.concatenate([images for images, _ in ds.as_numpy_iterator()])


def _variant_inputs(config, evaluation, train) -> dict:
    """What the export needs to check its variants: the evaluation split's batches (the
    accuracy guard) and, for int8 TFLite, representative training images (a seeded sample)."""
    e = config.export
    inputs = {}
    if evaluation is not None and (e.onnx or e.tflite):
        dataset = make_dataset(config, evaluation, training=False, one_hot=False)
        inputs["evaluation"] = dataset.as_numpy_iterator
    if e.tflite and e.tflite_quantization == "int8" and train is not None:
        rng = np.random.default_rng(config.seed)
        count = min(e.representative_examples, len(train))
        inputs["representative"] = _pixels(config, train.take(rng.permutation(len(train))[:count]))
    return inputs


def saved_thresholds(metrics: dict, class_names) -> np.ndarray | None:
    """A finished multi-label run's thresholds from its metrics.json, in output order."""
    saved = metrics.get("thresholds")
    return None if saved is None else np.asarray([saved[n] for n in class_names], np.float32)


def export_model(
    config,
    model,
    class_names,
    metrics: dict,
    thresholds=None,
    train: examples_lib.Examples | None = None,
    validation: examples_lib.Examples | None = None,
    test: examples_lib.Examples | None = None,
) -> Path:
    """Publishes the next export version with its manifest; prints where it went.

    The splits given (None: unavailable) supply real images for the parity check (validation,
    else test, else train; synthetic ones without any), the split the variants are scored on
    (test, else validation) and the int8 calibration images (train).
    """
    source = next((split for split in (validation, test, train) if split), None)
    check_images = examples_lib.encoded_samples(source, 8) if source is not None else []
    evaluation = test if test is not None else validation
    manifest = {
        "name": config.name,
        "backbone": config.model.backbone,
        "backbone_options": {"alpha": config.model.alpha} if config.model.alpha else {},
        "weights": config.model.weights or "random init",
        "config_digest": digest(config),
        # Temperature scaling applied inside the export (None: uncalibrated).
        "temperature": metrics.get("calibration", {}).get("temperature"),
        "test_metrics": {
            phase: {k: v for k, v in metrics[phase]["test"].items() if k != "confusion_matrix"}
            for phase in ("phase1", "phase2")
            if metrics.get(phase, {}).get("test")
        },
    }
    path = export.export_for_serving(
        model,
        class_names,
        config.model.image_size,
        Path(config.export.dir) / config.name,
        top_k=config.export.top_k,
        check_images=check_images,
        manifest=manifest,
        keep=config.export.keep,
        tflite=config.export.tflite_quantization if config.export.tflite else "",
        resize_method=config.data.resize_method,
        allow_class_change=config.export.allow_class_change,
        thresholds=thresholds,
        onnx=config.export.onnx,
        max_accuracy_drop=config.export.max_accuracy_drop,
        max_image_pixels=config.data.max_image_pixels,
        **_variant_inputs(config, evaluation, train),
    )
    say(f"Exported {path}")
    for row in export.read_manifest(path).get("variants", []):
        accuracy = "" if row["accuracy"] is None else f", accuracy {row['accuracy']:.4f}"
        say(
            f"  {row['variant']}: {row['bytes'] / 2**20:.2f} MB{accuracy}, batch-1 latency "
            f"{row['latency_ms_median']:.2f} ms (p95 {row['latency_ms_p95']:.2f})"
        )
    return path
