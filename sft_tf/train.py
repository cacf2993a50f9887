"""The trainers, each a linear narrative: strategy -> data -> model -> phases -> evaluate -> export.

`run` is `sft-tf train`: phase 1 trains the new head on a frozen base, phase 2 opens the base's
top blocks and continues at a lower learning rate, then the test split is evaluated and the
model exported. `pretrain` is `sft-tf pretrain`: a backbone trained from scratch on a source
task, saved for `run` to start from. Only this module and `cli.py` read config fields.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import keras
import ml_collections
import tensorflow as tf

from sft_tf import config_lib, data, evaluate, export
from sft_tf import model as model_lib
from sft_tf import strategy as strategy_lib
from sft_tf.errors import UserError

WEIGHTS_FILE = "model.weights.h5"
LABELS_FILE = "labels.txt"
BACKBONE_FILE = "backbone.weights.h5"


def _say(message: str) -> None:
    print(message, flush=True)


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def _digest(*parts: ml_collections.ConfigDict | int | str) -> str:
    """A short hash of config sections, to tell whether an earlier result still applies."""
    text = json.dumps(
        [config_lib.to_dict(p) if isinstance(p, ml_collections.ConfigDict) else p for p in parts],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_split(
    spec: str, field: str, classes: str | None, classes_field: str
) -> data.Examples | None:
    """Lists one split and applies the class subset; None for an empty spec."""
    if not spec:
        return None
    examples = data.load_examples(spec, field=field)
    return data.select_classes(examples, data.parse_classes(classes), field=classes_field)


def load_target_splits(config: ml_collections.ConfigDict):
    """The train/validation/test examples of `config.data`, checked to share one class list."""
    d = config.data
    train = load_split(d.train, "config.data.train", d.classes, "config.data.classes")
    train = data.sample_per_class(train, d.examples_per_class, seed=config.seed)
    validation = load_split(
        d.validation, "config.data.validation", d.classes, "config.data.classes"
    )
    test = load_split(d.test, "config.data.test", d.classes, "config.data.classes")
    for field, split in (("config.data.validation", validation), ("config.data.test", test)):
        if split is not None:
            data.check_same_classes(train.class_names, split, field)
    return train, validation, test


def _dataset(config, examples, training: bool, augment: bool = True) -> tf.data.Dataset:
    return data.build_dataset(
        examples,
        image_size=config.model.image_size,
        batch_size=config.data.global_batch_size,
        training=training,
        seed=config.seed,
        augment=data.parse_augment(config.data.augment) if (training and augment) else (),
    )


def _describe_split(name: str, examples: data.Examples) -> str:
    counts = examples.counts()
    return (
        f"  {name:<10} {len(examples):>6} images, {len(examples.class_names)} classes "
        f"({counts.min()}-{counts.max()} per class) from {examples.origin}"
    )


# ---------------------------------------------------------------------------------------------
# Model pieces
# ---------------------------------------------------------------------------------------------


def _build_model(config, num_classes: int, weights: str, batchnorm: str) -> keras.Model:
    m = config.model
    return model_lib.build_classifier(
        m.backbone,
        num_classes=num_classes,
        image_size=m.image_size,
        weights=weights,
        pooling=m.pooling,
        dropout=m.dropout,
        batchnorm=batchnorm,
        alpha=m.alpha,
    )


def _compile(
    model: keras.Model, learning_rate: float, warmup_epochs: float, epochs: int, steps: int
) -> None:
    """Adam with linear warm-up then cosine decay to zero over the phase."""
    total = max(1, epochs * steps)
    warmup = min(total - 1, round(warmup_epochs * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=total - warmup,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    num_classes = model.output_shape[-1]
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=metrics,
    )


def _test_metrics(model, config, test, class_names) -> dict | None:
    if test is None:
        return None
    probabilities = model.predict(_dataset(config, test, training=False), verbose=0)
    return evaluate.classification_metrics(
        probabilities, test.labels, class_names, top_k=config.export.top_k
    )


def _merge_history(history: dict, new: keras.callbacks.History) -> None:
    for key, values in new.history.items():
        history.setdefault(key, []).extend(float(v) for v in values)


def _fit(model, train_ds, val_ds, callbacks, **epochs) -> keras.callbacks.History:
    # Progress bars on a terminal, one line per epoch in logs (Keras redraws its bar even when
    # stdout is a file). The dataset shuffles itself; Keras cannot shuffle a tf.data set.
    return model.fit(
        train_ds,
        validation_data=val_ds,
        callbacks=callbacks,
        shuffle=False,
        verbose=1 if sys.stdout.isatty() else 2,
        **epochs,
    )


# ---------------------------------------------------------------------------------------------
# sft-tf train
# ---------------------------------------------------------------------------------------------


def run(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Fine-tunes, evaluates and exports; returns the metrics written to metrics.json.

    Args:
      config: a validated config.
      workdir: where config.json, logs, history, weights and metrics go.

    Returns:
      The metrics dict (also written to <workdir>/metrics.json).
    """
    # --- Data (listed first: a bad dataset stops the run before the workdir is touched) ------
    train, validation, test = load_target_splits(config)
    class_names = list(train.class_names)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_lib.save(config, workdir / "config.json")
    keras.utils.set_random_seed(config.seed)
    strategy = strategy_lib.build_strategy(config.runtime.strategy)
    (workdir / LABELS_FILE).write_text("\n".join(class_names) + "\n")
    _say("Data:")
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        if split is not None:
            _say(_describe_split(name, split))
    train_ds = _dataset(config, train, training=True)
    val_ds = _dataset(config, validation, training=False) if validation is not None else None
    steps = len(train) // config.data.global_batch_size

    # --- Model -------------------------------------------------------------------------------
    with strategy.scope():
        model = _build_model(
            config, len(class_names), config.model.weights, config.phase2.batchnorm
        )
    base = model_lib.get_base(model)
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(workdir / "logs")),
        keras.callbacks.CSVLogger(str(workdir / "history.csv"), append=True),
    ]
    history: dict = {}
    metrics: dict = {"classes": class_names, "train_examples": len(train)}
    p1, p2 = config.phase1, config.phase2

    # --- Phase 1: the head on a frozen base ----------------------------------------------------
    if p1.epochs:
        base.trainable = False
        with strategy.scope():
            _compile(model, p1.learning_rate, p1.warmup_epochs, p1.epochs, steps)
        _say(f"Phase 1 (head only, base frozen): {model_lib.describe_trainable(model)}")
        fit = _fit(model, train_ds, val_ds, callbacks, epochs=p1.epochs)
        _merge_history(history, fit)
        metrics["phase1"] = {
            "epochs": p1.epochs,
            "test": _test_metrics(model, config, test, class_names),
        }

    # --- Phase 2: the top blocks open, a lower learning rate -----------------------------------
    if p2.epochs:
        opened = model_lib.unfreeze_top_blocks(
            base, config.model.backbone, p2.unfreeze_blocks, train_batchnorm=p2.batchnorm == "train"
        )
        with strategy.scope():
            # A fresh optimizer: phase 1's moments belong to other variables and learning rate.
            _compile(model, p2.learning_rate, p2.warmup_epochs, p2.epochs, steps)
        _say(
            f"Phase 2 ({len(opened)} top blocks open: {', '.join(opened) or 'none'}; "
            f"BatchNorm {p2.batchnorm}): {model_lib.describe_trainable(model)}"
        )
        fit = _fit(
            model,
            train_ds,
            val_ds,
            callbacks,
            initial_epoch=p1.epochs,
            epochs=p1.epochs + p2.epochs,
        )
        _merge_history(history, fit)
        if p2.batchnorm == "train" and p2.recalibration_batches:
            used = model_lib.recalibrate_batchnorm(
                model,
                _dataset(config, train, training=True, augment=False),
                p2.recalibration_batches,
            )
            _say(f"Re-estimated BatchNorm statistics on {used} training batches")
        metrics["phase2"] = {
            "epochs": p2.epochs,
            "open_blocks": opened,
            "test": _test_metrics(model, config, test, class_names),
        }

    # --- Evaluate and export -------------------------------------------------------------------
    model.save_weights(workdir / WEIGHTS_FILE)
    _write_json(workdir / "history.json", history)
    for phase in ("phase1", "phase2"):
        if phase in metrics and metrics[phase]["test"]:
            _say(f"Test accuracy after {phase}: {metrics[phase]['test']['accuracy']:.4f}")
    if config.export.dir:
        check = data.encoded_samples(validation or test or train, 8)
        path = export.export_for_serving(
            model,
            class_names,
            config.model.image_size,
            Path(config.export.dir) / config.name,
            top_k=config.export.top_k,
            check_images=check,
        )
        metrics["export"] = str(path)
        _say(f"Exported {path}")
    _write_json(workdir / "metrics.json", metrics)
    return metrics


# ---------------------------------------------------------------------------------------------
# sft-tf pretrain
# ---------------------------------------------------------------------------------------------


def pretrain(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Trains the backbone from scratch on the source task and saves it for `run`.

    All layers train with BatchNorm in training mode; then BN statistics are re-estimated on
    source data (without that the saved base scores near chance in inference mode) and
    <workdir>/backbone.weights.h5 is written with a JSON sidecar (source classes, accuracy).
    A rerun with the same model, source and seed reuses the saved backbone.

    Returns:
      The sidecar's contents.
    """
    workdir = Path(workdir)
    weights_path = workdir / BACKBONE_FILE
    sidecar = model_lib.sidecar_path(weights_path)
    digest = _digest(config.model, config.pretrain, config.data.global_batch_size, config.seed)
    if weights_path.is_file() and sidecar.is_file():
        info = json.loads(sidecar.read_text())
        if info.get("digest") == digest:
            _say(
                f"Pretrained backbone already in {weights_path} (source accuracy "
                f"{info['source_test_accuracy']}); reusing it"
            )
            return info
    p = config.pretrain

    # --- Data (listed first: a bad dataset stops the run before the workdir is touched) ------
    train = load_split(p.train, "config.pretrain.train", p.classes, "config.pretrain.classes")
    test = load_split(p.test, "config.pretrain.test", p.classes, "config.pretrain.classes")
    if test is not None:
        data.check_same_classes(train.class_names, test, "config.pretrain.test")
    workdir.mkdir(parents=True, exist_ok=True)
    config_lib.save(config, workdir / "config.json")
    keras.utils.set_random_seed(config.seed)
    strategy = strategy_lib.build_strategy(config.runtime.strategy)
    _say("Source data:")
    for name, split in (("train", train), ("test", test)):
        if split is not None:
            _say(_describe_split(name, split))
    class_names = list(train.class_names)
    train_ds = _dataset(config, train, training=True)
    steps = len(train) // config.data.global_batch_size

    # --- Model: everything trains, BatchNorm included -----------------------------------------
    with strategy.scope():
        model = _build_model(config, len(class_names), weights="", batchnorm="train")
        model_lib.unfreeze_top_blocks(
            model_lib.get_base(model), config.model.backbone, -1, train_batchnorm=True
        )
        _compile(model, p.learning_rate, min(1.0, p.epochs / 5), p.epochs, steps)
    _say(f"Source training from scratch: {model_lib.describe_trainable(model)}")
    _fit(model, train_ds, None, [], epochs=p.epochs)

    # --- BatchNorm statistics, then the source accuracy ----------------------------------------
    before = _test_metrics(model, config, test, class_names)
    used = model_lib.recalibrate_batchnorm(
        model, _dataset(config, train, training=True, augment=False), p.recalibration_batches
    )
    after = _test_metrics(model, config, test, class_names)
    if after is not None:
        _say(
            f"Source test accuracy: {before['accuracy']:.4f} with training-time BatchNorm "
            f"statistics, {after['accuracy']:.4f} after re-estimating them on {used} batches"
        )
    info = {
        "backbone": config.model.backbone,
        "options": {} if config.model.alpha is None else {"alpha": config.model.alpha},
        "image_size": config.model.image_size,
        "source": p.train,
        "source_classes": class_names,
        "source_test_accuracy": None if after is None else after["accuracy"],
        "source_test_accuracy_before_bn_recalibration": None
        if before is None
        else before["accuracy"],
        "digest": digest,
    }
    model_lib.save_backbone_weights(model_lib.get_base(model), weights_path, info)
    _say(f"Saved the backbone to {weights_path}")
    return info


# ---------------------------------------------------------------------------------------------
# sft-tf evaluate / export from a workdir
# ---------------------------------------------------------------------------------------------


def restore(workdir: str | Path) -> tuple[ml_collections.ConfigDict, keras.Model, list[str]]:
    """Rebuilds a trained model from a workdir: config.json, labels.txt, model.weights.h5.

    Raises:
      UserError: the workdir lacks one of them.
    """
    workdir = Path(workdir)
    config = config_lib.load(workdir / "config.json")
    labels_path, weights_path = workdir / LABELS_FILE, workdir / WEIGHTS_FILE
    for path in (labels_path, weights_path):
        if not path.is_file():
            raise UserError(f"{path} not found; has `sft-tf train` finished in {workdir}?")
    class_names = labels_path.read_text().splitlines()
    model = _build_model(config, len(class_names), weights="", batchnorm=config.phase2.batchnorm)
    model.load_weights(weights_path)
    return config, model, class_names


def evaluate_workdir(workdir: str | Path) -> dict:
    """Evaluates a workdir's trained model on its config's test split; writes evaluation.json."""
    config, model, class_names = restore(workdir)
    _, _, test = load_target_splits(config)
    if test is None:
        raise UserError("config.data.test is empty; set it to evaluate")
    metrics = _test_metrics(model, config, test, class_names)
    _write_json(Path(workdir) / "evaluation.json", metrics)
    return metrics


def evaluate_export(export_dir: str | Path, config: ml_collections.ConfigDict) -> dict:
    """Evaluates an exported SavedModel (its serving_images signature) on config.data.test."""
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_images"]
    d = config.data
    test = load_split(d.test, "config.data.test", d.classes, "config.data.classes")
    if test is None:
        raise UserError("config.data.test is empty; set it to evaluate")
    data.check_same_classes(
        export.read_class_names(export_dir), test, "config.data.test", f"the export {export_dir}"
    )
    probabilities, labels = evaluate.collect_predictions(
        lambda images: serve(images=images)["probabilities"].numpy(),
        _dataset(config, test, training=False),
    )
    return evaluate.classification_metrics(
        probabilities, labels, list(test.class_names), top_k=config.export.top_k
    )


def export_workdir(workdir: str | Path) -> Path:
    """(Re)exports a workdir's trained model as the next version under its export root."""
    config, model, class_names = restore(workdir)
    if not config.export.dir:
        raise UserError(
            "config.export.dir is empty in this workdir's config.json; nothing to export to"
        )
    return export.export_for_serving(
        model,
        class_names,
        config.model.image_size,
        Path(config.export.dir) / config.name,
        top_k=config.export.top_k,
    )
