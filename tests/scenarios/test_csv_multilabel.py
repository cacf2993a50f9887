"""CSV-described data, single- and multi-label, through the real CLI: train both phases, export,
then a plain TensorFlow client (no sft_tf import), `sft-tf predict` and `sft-tf evaluate`."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sft_tf.training import inputs
from tests.helpers import CLASS_COLOURS, REPO, sft_tf, tiny_config, write_multilabel_csv

TINY = str(REPO / "configs" / "tiny.py")

CLIENT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    export, manifest_path, *files = sys.argv[1:]
    loaded = tf.saved_model.load(export)
    images = tf.constant([open(f, "rb").read() for f in files])
    out = loaded.signatures["serving_default"](image_bytes=images)
    thresholds = json.load(open(manifest_path))["thresholds"]
    print(json.dumps({
        "probabilities": out["probabilities"].numpy().tolist(),
        "predicted": out["predicted"].numpy().tolist(),
        "predicted_dtype": out["predicted"].dtype.name,
        "thresholds": thresholds,
    }))
    """
)


def _csv_args(csv, workdir="run", *extra):
    return (
        "train",
        f"--config={TINY}",
        f"--workdir={workdir}",
        f"--config.data.train=csv:{csv}:train",
        f"--config.data.validation=csv:{csv}:validation",
        f"--config.data.test=csv:{csv}:test",
        *extra,
    )


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("multilabel")
    csv = write_multilabel_csv(cwd / "data set")
    result = sft_tf(
        *_csv_args(
            csv,
            "run",
            "--config.data.multi_label=true",
            "--config.data.class_weighting=balanced",
            "--config.phase1.label_smoothing=0.1",
            "--config.export.tflite=true",
        ),
        cwd=cwd,
    )
    return cwd, csv, result.stdout


@pytest.mark.slow  # the shared multi-label run trains and exports: ~50 s
def test_multi_label_csv_trains_both_phases_and_serves_probabilities_and_predicted(multilabel_run):
    cwd, csv, out = multilabel_run
    assert "Positive-label weights (balanced)" in out and "Phase 1 on cached features" in out
    assert "Test mean average precision after phase2" in out
    metrics = json.loads((cwd / "run" / "metrics.json").read_text())
    assert set(metrics["thresholds"]) == set(CLASS_COLOURS)
    for phase in ("phase1", "phase2"):
        test = metrics[phase]["test"]
        assert test["multi_label"] and 0 <= test["mean_average_precision"] <= 1
        assert set(test["per_class"]) == set(CLASS_COLOURS) and "macro_f1" in test
    history = json.loads((cwd / "run" / "history.json").read_text())
    assert "binary_accuracy" in history and len(history["loss"]) == 2
    report = (cwd / "run" / "report" / "report.md").read_text()
    assert "precision_recall.png" in report and "| label | threshold |" in report
    assert "## Deployment variants" in report and "| TFLite float16 |" in report
    export = cwd / "saved_models" / "tiny" / "1"
    manifest_path = export / "assets.extra" / "sft_tf.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["multi_label"] and manifest["thresholds"] == metrics["thresholds"]
    assert (export / "assets" / "labels.txt").read_text().split() == sorted(CLASS_COLOURS)
    assert (export / "assets.extra" / "tflite" / "model.tflite").is_file()
    files = sorted(str(p) for p in (csv.parent / "my images").glob("test *.png"))[:5]
    client = subprocess.run(
        [sys.executable, "-c", CLIENT, str(export), str(manifest_path), *files],
        capture_output=True,
        text=True,
        check=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""},
    )
    served = json.loads(client.stdout)
    p = np.asarray(served["probabilities"])
    cut = np.asarray([served["thresholds"][name] for name in sorted(CLASS_COLOURS)])
    assert p.shape == (5, 3) and served["predicted_dtype"] == "int32"
    assert served["predicted"] == (p >= cut).astype(int).tolist()


@pytest.mark.slow  # three more CLI runs and an export on the shared run: ~40 s
def test_predict_evaluate_and_reexport_a_multi_label_run(multilabel_run):
    cwd, csv, _ = multilabel_run
    image = next((csv.parent / "my images").glob("test 000.png"))
    predicted = sft_tf("predict", "--workdir=run", str(image), cwd=cwd)
    assert "labels: " in predicted.stdout
    on_disk = sft_tf("evaluate", "--workdir=run", cwd=cwd)
    assert "mean_average_precision" in json.loads(on_disk.stdout)
    exported = sft_tf(
        "evaluate",
        "--model=saved_models/tiny",
        f"--config={TINY}",
        f"--config.data.test=csv:{csv}:test",
        cwd=cwd,
    )
    metrics = json.loads(exported.stdout)
    # The export's thresholds and the run's give the same decisions on the same images.
    assert metrics["macro_f1"] == json.loads(on_disk.stdout)["macro_f1"]
    sft_tf("export", "--workdir=run", cwd=cwd)
    manifests = [
        json.loads((cwd / "saved_models" / "tiny" / v / "assets.extra" / "sft_tf.json").read_text())
        for v in ("1", "2")
    ]
    assert manifests[0]["thresholds"] == manifests[1]["thresholds"]


def test_single_label_csv_lists_splits_samples_few_shot_and_weights_classes(tmp_path):
    csv = write_multilabel_csv(tmp_path / "data set", per_split=(40, 12, 12))
    # The same file read single-label: one class per row (the first listed).
    rows = csv.read_text().splitlines()
    single = [rows[0]] + [
        ",".join([image, label.split("|")[0], split])
        for image, label, split in (row.split(",") for row in rows[1:])
    ]
    csv.write_text("\n".join(single) + "\n")
    config = tiny_config(
        data__train=f"csv:{csv}:train",
        data__test=f"csv:{csv}:test",
        data__validation="split:0.2",
        data__examples_per_class=6,
        data__class_weighting="balanced",
    )
    train, validation, test = inputs.load_target_splits(config)
    assert train.class_names == tuple(sorted(CLASS_COLOURS)) == test.class_names
    assert not train.multi_label and (train.counts() + validation.counts()).tolist() == [6] * 3
    weights = inputs.training_class_weights(config, train)
    assert weights.shape == (3,) and np.isclose(np.average(weights, weights=train.counts()), 1)
    assert all(" " in path for path in train.paths)  # "data set/my images/..."


@pytest.mark.slow  # a whole CLI run on a single-label CSV, its audit and its export: ~45 s
def test_single_label_csv_through_the_cli_trains_audits_and_exports(tmp_path):
    csv = write_multilabel_csv(tmp_path / "data set", per_split=(32, 8, 12))
    rows = csv.read_text().splitlines()
    single = [rows[0]] + [
        ",".join([image, label.split("|")[-1], split])
        for image, label, split in (row.split(",") for row in rows[1:])
    ]
    csv.write_text("\n".join(single) + "\n")
    audit = sft_tf(
        "audit",
        f"--config={TINY}",
        "--workdir=audit",
        f"--config.data.train=csv:{csv}:train",
        f"--config.data.test=csv:{csv}:test",
        cwd=tmp_path,
    )
    assert "decodable from csv:" in audit.stdout
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["problems"] == []
    result = sft_tf(
        *_csv_args(csv, "run", "--config.data.class_weighting=balanced"),
        "--config.data.examples_per_class=6",
        cwd=tmp_path,
    )
    assert "Class weights (balanced)" in result.stdout
    assert "Test accuracy after phase2" in result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classes"] == sorted(CLASS_COLOURS) and metrics["train_examples"] == 18
    assert (tmp_path / "run" / "report" / "confusion_matrix.png").is_file()
    manifest = json.loads(
        (tmp_path / "saved_models" / "tiny" / "1" / "assets.extra" / "sft_tf.json").read_text()
    )
    assert not manifest["multi_label"] and manifest["thresholds"] is None
