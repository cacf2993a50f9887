"""The trainers, each a linear narrative: strategy -> data -> model -> phases -> evaluate -> export.

`run` is `sft-tf train`: phase 1 trains the new head on a frozen base, phase 2 opens the base's
top blocks and continues at a lower learning rate, then the test split is evaluated and the
model exported. `pretrain` is `sft-tf pretrain`: a backbone trained from scratch on a source
task, saved for `run` to start from. Only this module and `cli.py` read config fields.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from sft_tf import audit as audit_lib
from sft_tf import augment as augment_lib
from sft_tf import backbones, config_lib, data, evaluate, export, features, recipe, report
from sft_tf import checkpoint as ckpt
from sft_tf import model as model_lib
from sft_tf import strategy as strategy_lib
from sft_tf.errors import UserError
from sft_tf.lock import LOCK_FILE, WorkdirLock

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
    spec: str, field: str, classes: str | None, classes_field: str, tfds_data_dir: str = ""
) -> data.Examples | None:
    """Lists one split and applies the class subset; None for an empty spec."""
    if not spec:
        return None
    examples = data.load_examples(spec, field=field, tfds_data_dir=tfds_data_dir)
    return data.select_classes(examples, data.parse_classes(classes), field=classes_field)


def list_target_splits(config: ml_collections.ConfigDict) -> dict[str, data.Examples]:
    """The listed (not yet decoded) splits of `config.data`, checked to share one class list.

    A split:FRACTION validation set is not made here but by `sample_and_hold_out`, after
    undecodable images are gone.
    """
    d = config.data
    listed = {}
    for name in ("train", "validation", "test"):
        if name == "validation" and d.validation.startswith("split:"):
            continue
        split = load_split(
            d[name], f"config.data.{name}", d.classes, "config.data.classes", d.tfds_data_dir
        )
        if split is not None:
            listed[name] = split
    for name in ("validation", "test"):
        if name in listed:
            data.check_same_classes(
                listed["train"].class_names, listed[name], f"config.data.{name}"
            )
    return listed


def sample_and_hold_out(
    config: ml_collections.ConfigDict, splits: dict[str, data.Examples]
) -> dict[str, data.Examples]:
    """Few-shot sampling, then the split:FRACTION hold-out, both seeded by config.seed.

    Sampling first: validation comes out of the labels the run really has, and no example is
    in both.
    """
    d = config.data
    splits = dict(splits)
    splits["train"] = data.sample_per_class(splits["train"], d.examples_per_class, config.seed)
    if d.validation.startswith("split:"):
        fraction = float(data.parse_spec(d.validation, "config.data.validation").split)
        splits["train"], splits["validation"] = data.holdout(splits["train"], fraction, config.seed)
    return splits


def screen_splits(
    splits: dict[str, data.Examples], on_bad_image: str, max_pixels: int
) -> dict[str, data.Examples]:
    """Decodes every image once; drops and lists undecodable ones, or stops (on_bad_image=fail).

    Also stops on what the audit calls problems (an empty class, one class, train/test leakage).
    """
    scans = {name: data.scan_images(split, max_pixels) for name, split in splits.items()}
    report = audit_lib.audit(splits, scans)
    bad = [
        f"  {name}: {b['where']}: {b['reason']}"
        for name, s in report["splits"].items()
        for b in s["bad_files"]
    ]
    if bad and on_bad_image == "fail":
        raise UserError(
            f"{len(bad)} image(s) cannot be decoded (config.data.on_bad_image='fail'); fix or "
            "remove them, or set it to 'skip':\n" + "\n".join(bad)
        )
    if bad:
        _say(f"Skipping {len(bad)} image(s) that cannot be decoded:\n" + "\n".join(bad))
    if report["problems"]:
        problems = report["problems"]
        more = (
            f" (and {len(problems) - 1} more; sft-tf audit lists them)" if len(problems) > 1 else ""
        )
        raise UserError(f"the data is not usable: {problems[0].strip()}{more}")
    for pair, leak in report["leakage"].items():
        if leak["count"]:
            _say(f"Warning: {leak['count']} identical image(s) in {pair} (sft-tf audit lists them)")
    return {name: data.drop_bad(split, scans[name]) for name, split in splits.items()}


def load_target_splits(config: ml_collections.ConfigDict):
    """The train/validation/test examples of `config.data`: one class list, decodable images."""
    d = config.data
    splits = screen_splits(list_target_splits(config), d.on_bad_image, d.max_image_pixels)
    splits = sample_and_hold_out(config, splits)
    return splits["train"], splits.get("validation"), splits.get("test")


def _dataset(
    config,
    examples,
    training: bool,
    augment: bool = True,
    batch_size: int | None = None,
    one_hot: bool = True,
    class_weights: np.ndarray | None = None,
    resample: str = "none",
    **stream,
) -> tf.data.Dataset:
    """The pipeline for `examples` as `config.data` says.

    one_hot: labels as the trainers' loss takes them (False: int labels, for evaluation).
    class_weights: per-class training weights (`_class_weights`, from the whole training split
    even when `examples` is one worker's shard). resample: `data.resample`. Both only apply
    when `training`. stream: `start`, `until_epoch`, `epoch_batches` and `sources` of
    `data.build_dataset`.
    """
    d = config.data
    cache_dir = d.cache_dir or os.path.join(tempfile.gettempdir(), "sft_tf_cache")
    ds = data.build_dataset(
        examples,
        image_size=config.model.image_size,
        batch_size=batch_size or d.global_batch_size,
        training=training,
        seed=config.seed,
        augment=augment_lib.parse_augment(d.augment) if (training and augment) else (),
        resize_method=d.resize_method,
        cache=data.cache_plan(
            examples,
            config.model.image_size,
            d.cache,
            d.cache_memory_mb,
            cache_dir,
            f"{d.resize_method}-{'train' if training else 'eval'}",
        ),
        memory_budget_mb=d.cache_memory_mb,
        num_classes=len(examples.class_names) if one_hot else 0,
        class_weights=class_weights,
        resample=resample,
        **stream,
    )
    return ds


def _class_weights(config, train: data.Examples) -> np.ndarray | None:
    """`data.class_weighting` for the training split (None: unweighted)."""
    return augment_lib.class_weights(
        config.data.class_weighting,
        train.class_names,
        train.counts(),
        field="config.data.class_weighting",
    )


def _train_input(config, strategy, examples, balance: bool = True) -> tuple[Callable, int]:
    """Training batches split over the strategy's replicas, and the steps per epoch.

    Returns a function of ((epoch, step), until_epoch) giving the batches from that step of
    the run until that epoch (one stream per fit: a resumed run starts mid-way, see
    `data.epoch_stream`), and the steps per epoch to give fit as steps_per_epoch. The streams
    share one decode and cache.

    One worker (one device, Mirrored, a single-host TPU): Keras splits each global batch over
    the replicas, so a 2-replica run sees exactly the batches of a one-device run. Several
    workers: files and records get one input pipeline per worker that reads only its own
    shard; in-memory pixels have no files to split, so every worker builds the same pipeline
    and tf.distribute keeps each worker's part of every global batch (auto-shard by data).
    balance: apply data.class_weighting and data.resample (the target task's; not for source
    training).
    """
    global_batch = config.data.global_batch_size
    weights = _class_weights(config, examples) if balance else None
    resample = config.data.resample if balance else "none"
    if weights is not None:
        listed = ", ".join(f"{n} {w:.3g}" for n, w in zip(examples.class_names, weights))
        _say(f"Class weights ({config.data.class_weighting}): {listed}")
    if resample != "none":
        _say(f"Training draws the classes equally often (data.resample={resample})")
    options = {"class_weights": weights, "resample": resample}
    if examples.pixels is None and strategy_lib.input_pipelines(strategy) > 1:
        steps = strategy_lib.file_shard_steps(strategy, len(examples), global_batch)

        def by_file(start: tuple[int, int], until: int) -> tf.distribute.DistributedDataset:
            return strategy_lib.distribute_by_file(
                strategy,
                lambda indices, batch, epoch_batches, shard_start: _dataset(
                    config,
                    examples.take(indices),
                    training=True,
                    batch_size=batch,
                    epoch_batches=epoch_batches,
                    start=shard_start,
                    until_epoch=until,
                    **options,
                ),
                len(examples),
                global_batch,
                log=_say,
                start=start,
            )

        return by_file, steps

    sources: dict = {}

    def by_data(start: tuple[int, int], until: int) -> tf.data.Dataset:
        ds = _dataset(
            config,
            examples,
            training=True,
            start=start,
            until_epoch=until,
            sources=sources,
            **options,
        )
        return strategy_lib.shard_by_data(ds)

    return by_data, len(examples) // global_batch


def _runtime(config) -> tuple[tf.distribute.Strategy, dict]:
    """The strategy, precision policy and compile options; runs before any model is built."""
    r = config.runtime
    if r.deterministic:
        # Process-wide, and before any op runs (the CLI's multi-worker set-up aside).
        tf.config.experimental.enable_op_determinism()
    strategy = strategy_lib.build_strategy(r.strategy, r.tpu)
    per_replica = strategy_lib.per_replica_batch_size(config.data.global_batch_size, strategy)
    policy = strategy_lib.resolve_precision(r.precision, strategy)
    # Before the model: each layer takes the policy that is current when it is built.
    strategy_lib.set_precision(policy)
    options = {
        "jit_compile": strategy_lib.resolve_jit_compile(r.jit_compile, strategy),
        "steps_per_execution": strategy_lib.resolve_steps_per_execution(
            r.steps_per_execution, strategy
        ),
    }
    _say(
        f"Global batch {config.data.global_batch_size} = {per_replica} per replica x "
        f"{strategy.num_replicas_in_sync}; precision {policy}; "
        f"jit_compile={options['jit_compile']}; steps_per_execution="
        f"{options['steps_per_execution']}; learning-rate scaling {r.lr_scaling}"
        + ("; deterministic ops" if r.deterministic else "")
    )
    return strategy, options


def _learning_rate(config, learning_rate: float) -> float:
    return strategy_lib.scaled_learning_rate(
        learning_rate, config.data.global_batch_size, config.runtime.lr_scaling
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
        head_init=m.head_init,
    )


def _compile(
    model: keras.Model,
    learning_rate: float,
    warmup_epochs: float,
    epochs: int,
    steps: int,
    compile_options: dict | None = None,
    phase: ml_collections.ConfigDict | None = None,
    rate_scales=(),
) -> None:
    """The phase's optimizer with linear warm-up then cosine decay to zero over the phase.

    compile_options: jit_compile and steps_per_execution from `_runtime`. Under mixed_float16
    Keras wraps the optimizer in a LossScaleOptimizer itself.
    phase: the config section with optimizer, weight_decay, momentum, nesterov, clipnorm and
    label_smoothing (None: plain Adam). rate_scales: per-variable learning-rate factors.
    """
    total = max(1, epochs * steps)
    warmup = min(total - 1, round(warmup_epochs * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=total - warmup,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    num_classes = model.output_shape[-1]
    # The pipelines give one-hot labels (soft ones after mixup/cutmix).
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    if phase is None:
        optimizer = recipe.build_optimizer("adam", schedule)
    else:
        optimizer = recipe.build_optimizer(
            phase.optimizer,
            schedule,
            weight_decay=phase.weight_decay,
            momentum=phase.momentum,
            nesterov=phase.nesterov,
            clipnorm=phase.clipnorm,
        )
    optimizer.set_rate_scales(rate_scales)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            label_smoothing=phase.label_smoothing if phase else 0.0
        ),
        metrics=metrics,
        **(compile_options or {}),
    )


def _phase2_recipe(config, base: keras.Model, opened: list[str]) -> list:
    """Applies L2-SP to the opened layers; returns the per-block learning-rate factors."""
    p2 = config.phase2
    structure = backbones.block_structure(base, config.model.backbone)
    blocks = [(name, layers) for name, layers in structure.blocks if name in opened]
    if p2.l2sp:
        # BatchNorm scale and shift stay free: they follow the new data's statistics.
        weights = [
            w
            for layer in base.layers
            if layer.trainable and not isinstance(layer, keras.layers.BatchNormalization)
            for w in layer.trainable_weights
        ]
        count = recipe.apply_l2sp(weights, p2.l2sp)
        _say(f"L2-SP {p2.l2sp:g} toward the starting weights on {count} variables")
    if p2.layer_decay == 1.0:
        return []
    return recipe.block_rate_scales(base, blocks, p2.layer_decay)


def _early_stopping(phase: ml_collections.ConfigDict, val_ds) -> list[keras.callbacks.Callback]:
    """Stop on a stalled validation loss and go back to the best epoch's weights (per phase)."""
    if not phase.early_stopping_patience or val_ds is None:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=phase.early_stopping_patience,
            restore_best_weights=True,
            verbose=1,
        )
    ]


def _predict(model, config, examples: data.Examples, dataset=None) -> np.ndarray:
    """Class probabilities for every example, in order.

    dataset: `examples`' evaluation pipeline when the caller keeps one (its pixel cache then
    survives from one call to the next); built here otherwise.
    """
    ds = dataset or _dataset(config, examples, training=False, one_hot=False)
    if strategy_lib.input_pipelines(model.distribute_strategy) > 1:
        # Several workers: model.predict would return only this worker's share of the
        # examples, so each worker runs the model itself on all of them.
        probabilities, _ = evaluate.collect_predictions(
            tf.function(lambda images: model(images, training=False)), ds
        )
        return probabilities
    return model.predict(ds, verbose=0)


def _test_metrics(model, config, test, class_names, dataset=None) -> dict | None:
    if test is None:
        return None
    return evaluate.classification_metrics(
        _predict(model, config, test, dataset),
        test.labels,
        class_names,
        top_k=config.export.top_k,
    )


def write_report(
    model,
    config,
    test: data.Examples,
    folder: Path,
    history=None,
    phase_switch=None,
    dataset=None,
) -> dict:
    """The evaluation report of `model` on `test` in `folder` (see sft_tf/report.py)."""

    def load_images(indices):
        subset = test.take(np.asarray(indices))
        encoded = data.encoded_samples(subset, len(subset))
        size, method = config.model.image_size, config.data.resize_method
        return np.stack([data.decode_image(b, size, method).numpy() for b in encoded])

    metrics = report.write_report(
        folder,
        _predict(model, config, test, dataset),
        test.labels,
        list(test.class_names),
        load_images,
        history=history,
        phase_switch=phase_switch,
        top_k=config.export.top_k,
        title=f"{config.name}: {config.model.backbone} on {test.origin}",
    )
    return metrics


def _calibrate(model, config, validation: data.Examples) -> dict:
    """Fits the temperature on validation data (export.calibrate); returns what it measured."""
    probabilities = _predict(model, config, validation)
    temperature = round(evaluate.fit_temperature(probabilities, validation.labels), 4)
    scaled = evaluate.apply_temperature(probabilities, temperature)
    result = {"temperature": temperature, "validation_examples": len(validation)}
    for name, p in (("before", probabilities), ("after", scaled)):
        result[f"validation_nll_{name}"] = round(
            evaluate.negative_log_likelihood(p, validation.labels), 4
        )
        result[f"validation_ece_{name}"] = round(evaluate.calibration(p, validation.labels)[0], 4)
    _say(
        f"Temperature scaling (export.calibrate): T={temperature} on {len(validation)} "
        f"validation images; NLL {result['validation_nll_before']} -> "
        f"{result['validation_nll_after']}, ECE {result['validation_ece_before']} -> "
        f"{result['validation_ece_after']}"
    )
    return result


def _served(model: keras.Model, metrics: dict) -> keras.Model:
    """The model as evaluated and exported: with the fitted temperature, if there is one."""
    return model_lib.with_temperature(model, metrics.get("calibration", {}).get("temperature"))


def _merge_history(history: dict, new: keras.callbacks.History) -> None:
    for key, values in new.history.items():
        history.setdefault(key, []).extend(float(v) for v in values)


def save_weights_atomic(model: keras.Model, path: Path) -> None:
    """Writes a weights file by temp file + rename: never a truncated file under `path`."""
    # Keras insists on the .weights.h5 suffix; the leading dot keeps the temp file hidden.
    partial = path.with_name(f".partial-{path.name}")
    model.save_weights(partial)
    os.replace(partial, path)


class SaveWeightsEachEpoch(keras.callbacks.Callback):
    """Rewrites the weights file at every epoch end, atomically (temp file, then rename).

    `sft-tf export` of an interrupted run then exports the last completed epoch, and a crash
    mid-write never leaves a truncated file under the real name.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        save_weights_atomic(self.model, self.path)


def _fit_head_on_features(
    config, model, head, train, validation, callbacks
) -> keras.callbacks.History:
    """Phase 1 on cached features: the frozen base runs once per image instead of every epoch.

    The feature batches come in the same seeded order as the image pipeline's, so the head gets
    the same updates as it would from `_fit` on images (tests/test_input_pipeline.py checks).
    """
    batch = config.data.global_batch_size
    num_classes = len(train.class_names)
    start = time.perf_counter()
    train_f = features.feature_dataset(
        features.extract(model, _dataset(config, train, training=False, one_hot=False)),
        train.labels,
        batch,
        training=True,
        seed=config.seed,
        num_classes=num_classes,
        class_weights=_class_weights(config, train),
        resample=config.data.resample,
        epochs=config.phase1.epochs,
    )
    val_f = None
    if validation is not None:
        val_f = features.feature_dataset(
            features.extract(model, _dataset(config, validation, training=False, one_hot=False)),
            validation.labels,
            batch,
            training=False,
            num_classes=num_classes,
        )
    _say(
        f"Phase 1 on cached features (phase1.cache_features): the frozen base ran once over "
        f"the data in {time.perf_counter() - start:.1f} s"
    )
    # The per-epoch weights file is the whole model's; the head-only fit cannot write it.
    head_callbacks = [c for c in callbacks if not isinstance(c, SaveWeightsEachEpoch)]
    head_callbacks += _early_stopping(config.phase1, val_f)
    return _fit(
        head,
        train_f,
        val_f,
        head_callbacks,
        epochs=config.phase1.epochs,
        steps_per_epoch=len(train) // batch,
    )


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


# Config fields that do not change what is trained: a resumed run may differ in these.
_RESUME_FREE = (
    "name",
    "export.",
    "data.test",
    "runtime.strategy",
    "runtime.tpu",
    "runtime.checkpoint_every_steps",
    "runtime.deterministic",
)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _config_changes(workdir: Path, config) -> list[str]:
    """The training-relevant fields in which `config` differs from the run in `workdir`."""
    try:
        saved = _flatten(json.loads((workdir / "config.json").read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(
            f"{workdir / 'config.json'} cannot be read ({e}); rerun with --restart to move the "
            "run aside and start over, or use a new --workdir"
        ) from e
    current = _flatten(config_lib.to_dict(config))
    # A field added by a newer sft_tf is missing from an older run's config.json: it counts
    # as unchanged while it keeps its default.
    defaults = _flatten(config_lib.to_dict(config_lib.base_config()))
    saved = {**{k: defaults[k] for k in current.keys() - saved.keys() if k in defaults}, **saved}
    return [
        f"{key} ({saved.get(key)!r} -> {current.get(key)!r})"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key) and not key.startswith(_RESUME_FREE)
    ]


def _resume_point(workdir: Path, config, restart: bool, allow_config_change: bool) -> dict | None:
    """The interrupted (or finished) run's state to continue from, or None to start fresh.

    Reads only: `--restart` moves the old run aside later (`_move_aside`), once the new run
    has passed every check.

    Raises:
      UserError: the config differs from the run's in fields that affect training, or the
        run's checkpoints cannot be restored.
    """
    if restart:
        return None
    state = ckpt.resume_point(workdir, say=_say)
    if state is None:
        return None
    changed = _config_changes(workdir, config)
    if changed and state.get("complete"):
        raise UserError(
            f"{workdir} holds a complete run trained with another config: "
            f"{'; '.join(changed)}. Rerun with --restart to train again with this config (the "
            "finished run is moved aside), or use a new --workdir"
        )
    if changed:
        if not allow_config_change:
            raise UserError(
                f"the config differs from the interrupted run in {workdir}: "
                f"{'; '.join(changed)}. Rerun with the same config, add --allow_config_change "
                "to continue anyway, or --restart to start over"
            )
        _say(f"Resuming with a changed config (--allow_config_change): {'; '.join(changed)}")
    return state


def _move_aside(workdir: Path, lock: WorkdirLock) -> None:
    """--restart: renames an earlier run to <workdir>.old-<time>; the lock stays with us."""
    if not workdir.is_dir() or not any(p.name != LOCK_FILE for p in workdir.iterdir()):
        return
    aside = workdir.with_name(f"{workdir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    workdir.rename(aside)
    lock.release()  # its file went along with the old run
    lock.acquire(workdir)
    (aside / LOCK_FILE).unlink(missing_ok=True)
    _say(f"--restart: moved the earlier run to {aside}")


def _check_batch_fits(examples: data.Examples, batch_size: int, field: str) -> None:
    """Training needs one whole batch: say so before anything is written."""
    if len(examples) < batch_size:
        raise UserError(
            f"config.data.global_batch_size={batch_size} is larger than {field} "
            f"({len(examples)} images after sampling and hold-out); lower it to <= "
            f"{len(examples)} or add images"
        )


def run(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    restart: bool = False,
    allow_config_change: bool = False,
) -> dict:
    """Fine-tunes, evaluates and exports; returns the metrics written to metrics.json.

    Rerun on the workdir of an interrupted run, it resumes from the last checkpoint; on a
    complete run it only reports that. One process at a time works in a workdir (a lock).

    Args:
      config: a validated config.
      workdir: where config.json, logs, history, weights, checkpoints and metrics go.
      restart: move an existing run in `workdir` aside (to <workdir>.old-<time>) and start over.
      allow_config_change: resume even if the config differs from the interrupted run's.

    Returns:
      The metrics dict (also written to <workdir>/metrics.json).
    """
    lock = WorkdirLock()
    try:
        return _run(config, workdir, lock, restart, allow_config_change)
    finally:
        lock.release()


def _run(config, workdir, lock: WorkdirLock, restart: bool, allow_config_change: bool) -> dict:
    """`run` with the workdir's lock to take (and `run` to release)."""
    # --- Strategy (first: multi-worker collectives must be set up before any TF op runs) ---
    strategy, compile_options = _runtime(config)
    # Every worker runs all of what follows; only the chief's files are kept (output_dir).
    chief = strategy_lib.is_chief(strategy)
    workdir = strategy_lib.output_dir(workdir, strategy)
    lock.acquire(workdir, create=False)  # an existing workdir: refuse now if a run has it

    # --- Data (listed first: a bad dataset stops the run before the workdir is touched) ------
    train, validation, test = load_target_splits(config)
    _check_batch_fits(train, config.data.global_batch_size, "the training split")
    class_names = list(train.class_names)
    if config.export.dir:  # refuse now, not after training, a label set TF Serving would swap in
        export.check_class_change(
            Path(config.export.dir) / config.name, class_names, config.export.allow_class_change
        )
    resume = _resume_point(workdir, config, restart, allow_config_change)
    if resume and resume.get("complete"):
        _say(f"{workdir} holds a complete run (--restart trains again); its metrics are kept")
        return resume["metrics"]
    keras.utils.set_random_seed(config.seed)
    _say("Data:")
    for name, split in (("train", train), ("validation", validation), ("test", test)):
        if split is not None:
            _say(_describe_split(name, split))
    train_input, steps = _train_input(config, strategy, train)
    val_ds = _dataset(config, validation, training=False) if validation is not None else None
    # One evaluation pipeline for the test split: its pixel cache serves every evaluation.
    test_ds = _dataset(config, test, training=False, one_hot=False) if test is not None else None

    # --- Model -------------------------------------------------------------------------------
    with strategy.scope():
        model = _build_model(
            config, len(class_names), config.model.weights, config.phase2.batchnorm
        )
    strategy_lib.allow_multi_worker_fit(model, strategy)
    base = model_lib.get_base(model)

    # --- The workdir (every check has passed: from here on, files are written) ----------------
    lock.acquire(workdir)
    if restart:
        _move_aside(workdir, lock)
    config_lib.save(config, workdir / "config.json")
    (workdir / LABELS_FILE).write_text("\n".join(class_names) + "\n")
    p1, p2 = config.phase1, config.phase2
    # Where an earlier, interrupted run of this workdir got to (None: a fresh start).
    state = resume or {"phase": "phase1", "epochs_done": 0, "mid_epoch_step": 0}
    history: dict = state.get("history", {})
    metrics: dict = state.get("metrics") or {"classes": class_names, "train_examples": len(train)}
    checkpoints = ckpt.RunCheckpoints(workdir, model)
    started = dict(state)  # what this process resumes from

    def save_state(
        phase, epochs_done, mid_epoch_step=0, epoch_logs=None, checkpoint_phase=None, save=True
    ):
        """Records where the run is; with save, in a new checkpoint that the record names."""
        for key, value in (epoch_logs or {}).items():
            history.setdefault(key, []).append(float(value))
        state.update(phase=phase, epochs_done=epochs_done, mid_epoch_step=mid_epoch_step)
        state.update(checkpoint_phase=checkpoint_phase or phase)
        state.update(history=history, metrics=metrics, complete=False)
        if save:
            state.update(checkpoints.save(state))
        else:
            ckpt.write_json_atomic(workdir / ckpt.STATE_FILE, state)
        if history:
            ckpt.write_history_csv(workdir / "history.csv", history)

    def phase_callbacks(phase: str, hint: str, first_step: int) -> list:
        # The non-finite guard comes first: it must stop the step before anything is saved.
        return [
            ckpt.StopOnNonFinite(phase, hint, first_step),
            keras.callbacks.TensorBoard(log_dir=str(workdir / "logs")),
            SaveWeightsEachEpoch(workdir / WEIGHTS_FILE),
            ckpt.ProgressSaver(
                phase,
                lambda **kw: save_state(phase, **kw),
                config.runtime.checkpoint_every_steps,
                first_step,
            ),
        ]

    def restore_into(phase: str) -> tuple[int, int]:
        """Restores the interrupted run's checkpoint into `phase`: (epochs done, steps done of
        the next epoch)."""
        fresh = (0 if phase == "phase1" else p1.epochs, 0)
        if started["phase"] != phase or "checkpoint" not in started:  # not begun before
            return fresh
        same_phase = started.get("checkpoint_phase") == phase
        checkpoints.restore(started["checkpoint"], with_optimizer=same_phase)
        done, step = started["epochs_done"], started["mid_epoch_step"]
        _say(f"Resuming {phase} after {done} finished epoch(s) from {started['checkpoint']}")
        if step:
            _say(
                f"  the last checkpoint is from step {step} of epoch {done + 1}: that epoch "
                f"continues at step {step + 1} of {steps}, with the batches it would have had"
            )
        return done, step

    def fit_phase(phase: str, phase_config, last_epoch: int) -> None:
        """Trains `phase` up to `last_epoch` (of the whole run) from where it got to."""
        epoch, step = restore_into(phase)
        while epoch < last_epoch:
            # A resumed, half-done epoch is a fit of its remaining steps; then the rest.
            until = epoch + 1 if step else last_epoch
            _fit(
                model,
                train_input((epoch, step), until),
                val_ds,
                phase_callbacks(phase, hint, step) + _early_stopping(phase_config, val_ds),
                initial_epoch=epoch,
                epochs=until,
                steps_per_epoch=steps - step,
            )
            if model.stop_training:  # early stopping
                break
            epoch, step = until, 0

    hint = "lower the learning rate, or use runtime.precision=float32 if mixed precision is on"

    # --- Phase 1: the head on a frozen base ----------------------------------------------------
    if p1.epochs and started["phase"] == "phase1":
        base.trainable = False
        multi_worker = getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()
        cached = features.should_cache(
            p1.cache_features, augment_lib.parse_augment(config.data.augment), multi_worker
        )
        with strategy.scope():
            # With cached features only the head (dropout + Dense, the same layers) trains.
            trainee = features.head_of(model) if cached else model
            _compile(
                trainee,
                _learning_rate(config, p1.learning_rate),
                p1.warmup_epochs,
                p1.epochs,
                steps,
                # A head step is microseconds of work: run a whole epoch per call, or Python
                # per-step overhead is most of phase 1. (Not where Keras cannot: 2-replica
                # Mirrored, see strategy_lib.multi_step_execution_works.)
                {**compile_options, "steps_per_execution": steps}
                if cached and strategy_lib.multi_step_execution_works(strategy)
                else compile_options,
                phase=p1,
            )
            if cached:
                # Only the head was compiled, but the end-of-phase checkpoint saves the whole
                # model, which needs an optimizer to track; phase 2 never restores this one.
                model.compile(optimizer=keras.optimizers.Adam(), loss=trainee.loss)
            checkpoints.track(model)
        _say(f"Phase 1 (head only, base frozen): {model_lib.describe_trainable(model)}")
        if cached:
            # Seconds of work: an interrupted cached phase 1 simply runs again.
            ckpt.note_position("phase1 (the head on cached features)")
            fit = _fit_head_on_features(
                config, model, trainee, train, validation, [ckpt.StopOnNonFinite("phase 1", hint)]
            )
            _merge_history(history, fit)
        else:
            fit_phase("phase1", p1, p1.epochs)
        metrics["phase1"] = {
            "epochs": p1.epochs,
            "test": _test_metrics(model, config, test, class_names, test_ds),
        }
        save_state("phase2", p1.epochs, checkpoint_phase="phase1")

    # --- Phase 2: the top blocks open, a lower learning rate -----------------------------------
    if p2.epochs:
        opened = model_lib.unfreeze_top_blocks(
            base, config.model.backbone, p2.unfreeze_blocks, train_batchnorm=p2.batchnorm == "train"
        )
        with strategy.scope():
            # A fresh optimizer: phase 1's moments belong to other variables and learning rate.
            _compile(
                model,
                _learning_rate(config, p2.learning_rate),
                p2.warmup_epochs,
                p2.epochs,
                steps,
                compile_options,
                phase=p2,
                rate_scales=_phase2_recipe(config, base, opened),
            )
            checkpoints.track(model)
        _say(
            f"Phase 2 ({len(opened)} top blocks open: {', '.join(opened) or 'none'}; "
            f"BatchNorm {p2.batchnorm}): {model_lib.describe_trainable(model)}"
        )
        if started["phase"] == "trained":
            checkpoints.restore(started["checkpoint"], with_optimizer=False)  # training is done
        else:
            fit_phase("phase2", p2, p1.epochs + p2.epochs)
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
                "test": _test_metrics(model, config, test, class_names, test_ds),
            }
            save_state("trained", p1.epochs + p2.epochs)
    elif started["phase"] == "trained":
        checkpoints.restore(started["checkpoint"], with_optimizer=False)
    else:  # phase 1's last checkpoint holds the trained model
        save_state("trained", p1.epochs, checkpoint_phase="phase1", save=False)

    # --- Calibrate, evaluate and export ---------------------------------------------------------
    ckpt.note_position("evaluation and export, after training")
    if config.export.calibrate and validation is not None:
        metrics["calibration"] = _calibrate(model, config, validation)
    served = _served(model, metrics)
    save_weights_atomic(model, workdir / WEIGHTS_FILE)
    # Workers that stayed in sync print the same digest (the multi-worker test compares them).
    _say(f"Final weights sha256 {strategy_lib.weights_digest(model.weights)}")
    _write_json(workdir / "history.json", history)
    for phase in ("phase1", "phase2"):
        if phase in metrics and metrics[phase]["test"]:
            _say(f"Test accuracy after {phase}: {metrics[phase]['test']['accuracy']:.4f}")
    if test is not None and chief:
        switch = p1.epochs if p2.epochs else None
        write_report(served, config, test, workdir / "report", history, switch, test_ds)
        _say(f"Evaluation report: {workdir / 'report' / 'report.md'}")
    if config.export.dir:
        check = data.encoded_samples(validation or test or train, 8)
        # Every worker exports: the export's check runs model.predict, whose collectives all
        # workers must join. Other workers export into their scratch dir, deleted below.
        export_config = config
        if not chief:
            export_config = copy.deepcopy(config)
            export_config.export.dir = str(workdir / "saved_models")
        path = _export(export_config, served, class_names, check, metrics)
        metrics["export"] = str(path)
    _write_json(workdir / "metrics.json", metrics)
    state.update(complete=True, metrics=metrics)
    ckpt.write_json_atomic(workdir / ckpt.STATE_FILE, state)
    strategy_lib.remove_scratch(workdir, strategy)
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
    lock = WorkdirLock()
    try:
        return _pretrain(config, Path(workdir), lock)
    finally:
        lock.release()


def _pretrain(config: ml_collections.ConfigDict, workdir: Path, lock: WorkdirLock) -> dict:
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
    # Strategy first: multi-worker collectives must be set up before any TF op runs.
    strategy, compile_options = _runtime(config)

    # --- Data (listed first: a bad dataset stops the run before the workdir is touched) ------
    tfds_dir = config.data.tfds_data_dir
    train = load_split(
        p.train, "config.pretrain.train", p.classes, "config.pretrain.classes", tfds_dir
    )
    test = load_split(
        p.test, "config.pretrain.test", p.classes, "config.pretrain.classes", tfds_dir
    )
    if test is not None:
        data.check_same_classes(train.class_names, test, "config.pretrain.test")
    screened = screen_splits(
        {"train": train, **({"test": test} if test is not None else {})},
        config.data.on_bad_image,
        config.data.max_image_pixels,
    )
    train, test = screened["train"], screened.get("test")
    _check_batch_fits(train, config.data.global_batch_size, "config.pretrain.train")
    # Only the chief keeps what it writes; other workers write into a scratch dir (output_dir).
    workdir = strategy_lib.output_dir(workdir, strategy)
    weights_path = workdir / BACKBONE_FILE
    lock.acquire(workdir)
    config_lib.save(config, workdir / "config.json")
    keras.utils.set_random_seed(config.seed)
    _say("Source data:")
    for name, split in (("train", train), ("test", test)):
        if split is not None:
            _say(_describe_split(name, split))
    class_names = list(train.class_names)
    train_input, steps = _train_input(config, strategy, train, balance=False)

    # --- Model: everything trains, BatchNorm included -----------------------------------------
    with strategy.scope():
        model = _build_model(config, len(class_names), weights="", batchnorm="train")
        model_lib.unfreeze_top_blocks(
            model_lib.get_base(model), config.model.backbone, -1, train_batchnorm=True
        )
        _compile(
            model,
            _learning_rate(config, p.learning_rate),
            min(1.0, p.epochs / 5),
            p.epochs,
            steps,
            compile_options,
            phase=p,
        )
    strategy_lib.allow_multi_worker_fit(model, strategy)
    _say(f"Source training from scratch: {model_lib.describe_trainable(model)}")
    _fit(model, train_input((0, 0), p.epochs), None, [], epochs=p.epochs, steps_per_epoch=steps)

    # --- BatchNorm statistics, then the source accuracy ----------------------------------------
    test_ds = _dataset(config, test, training=False, one_hot=False) if test is not None else None
    before = _test_metrics(model, config, test, class_names, test_ds)
    used = model_lib.recalibrate_batchnorm(
        model, _dataset(config, train, training=True, augment=False), p.recalibration_batches
    )
    after = _test_metrics(model, config, test, class_names, test_ds)
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
    strategy_lib.remove_scratch(workdir, strategy)
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
    config, model, _ = restore(workdir)
    model = _served(model, _saved_metrics(workdir))
    _, _, test = load_target_splits(config)
    if test is None:
        raise UserError("config.data.test is empty; set it to evaluate")
    history_path = Path(workdir) / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else None
    p1, p2 = config.phase1, config.phase2
    metrics = write_report(
        model, config, test, Path(workdir) / "report", history, p1.epochs if p2.epochs else None
    )
    _write_json(Path(workdir) / "evaluation.json", metrics)
    return metrics


def evaluate_export(export_dir: str | Path, config: ml_collections.ConfigDict) -> dict:
    """Evaluates an exported SavedModel (its serving_images signature) on config.data.test."""
    serve = export.load_signature(export_dir, "serving_images")
    d = config.data
    test = load_split(d.test, "config.data.test", d.classes, "config.data.classes", d.tfds_data_dir)
    if test is None:
        raise UserError("config.data.test is empty; set it to evaluate")
    test = screen_splits({"test": test}, d.on_bad_image, d.max_image_pixels)["test"]
    data.check_same_classes(
        export.read_class_names(export_dir), test, "config.data.test", f"the export {export_dir}"
    )
    probabilities, labels = evaluate.collect_predictions(
        lambda images: serve(images=images)["probabilities"].numpy(),
        _dataset(config, test, training=False, one_hot=False),
    )
    return evaluate.classification_metrics(
        probabilities, labels, list(test.class_names), top_k=config.export.top_k
    )


def export_workdir(workdir: str | Path) -> Path:
    """(Re)exports a workdir's model as the next version under its export root.

    Works on a finished run and on an interrupted one: the weights file is rewritten at every
    epoch end, so the last completed epoch is what gets exported. Refused while another
    process works in the workdir.
    """
    lock = WorkdirLock()
    try:
        lock.acquire(workdir, create=False)
        return _export_workdir(workdir)
    finally:
        lock.release()


def _export_workdir(workdir: str | Path) -> Path:
    config, model, class_names = restore(workdir)
    if not config.export.dir:
        raise UserError(
            "config.export.dir is empty in this workdir's config.json; nothing to export to"
        )
    metrics = _saved_metrics(workdir)
    try:  # real images for the parity check when the data is still there
        train, validation, test = load_target_splits(config)
        check = data.encoded_samples(validation or test or train, 8)
    except UserError as e:
        _say(f"Data unavailable ({e}); checking the export on synthetic images")
        check = []
    return _export(config, _served(model, metrics), class_names, check, metrics)


def _saved_metrics(workdir: str | Path) -> dict:
    """metrics.json of a finished run ({} before the run finished)."""
    path = Path(workdir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _export(config, model, class_names, check_images, metrics: dict) -> Path:
    """Publishes the next export version with its manifest; prints where it went."""
    manifest = {
        "name": config.name,
        "backbone": config.model.backbone,
        "backbone_options": {"alpha": config.model.alpha} if config.model.alpha else {},
        "weights": config.model.weights or "random init",
        "config_digest": _digest(config),
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
    )
    _say(f"Exported {path}")
    return path


# ---------------------------------------------------------------------------------------------
# sft-tf audit
# ---------------------------------------------------------------------------------------------


def audit(config: ml_collections.ConfigDict, workdir: str | Path) -> int:
    """Audits every split of `config.data`, prints the findings, writes <workdir>/audit.json.

    Returns:
      1 when the audit found problems (an empty class, a single class, train/test leakage),
      else 0: the exit status of `sft-tf audit`.
    """
    splits = list_target_splits(config)
    pixels = config.data.max_image_pixels
    scans = {name: data.scan_images(split, pixels) for name, split in splits.items()}
    report = audit_lib.audit(splits, scans)
    for line in audit_lib.describe(report):
        _say(line)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _write_json(workdir / "audit.json", report)
    _say(f"Wrote {workdir / 'audit.json'}")
    return 1 if report["problems"] else 0
