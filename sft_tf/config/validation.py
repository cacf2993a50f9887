"""The configuration schema: every field, its default and what it means, in one place.

Config files in `configs/` start from `base_config()` and change what their experiment needs.
Code reads fields directly (`config.phase2.learning_rate`), never `config.get(key, default)`: a
field that is not declared here does not exist, and `lock_config=True` turns a mistyped override
into an error.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

from sft_tf.config.files import to_dict
from sft_tf.config.schema import MAX_EPOCHS, MAX_IMAGE_SIZE
from sft_tf.data import audit as audit_lib
from sft_tf.data import augment as augment_lib
from sft_tf.data import balance as balance_lib
from sft_tf.data import caches, decode, specs
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources as sources_lib
from sft_tf.distribute import strategy as strategy_lib
from sft_tf.errors import UserError
from sft_tf.evaluation import learning
from sft_tf.log import say
from sft_tf.model import backbones
from sft_tf.model import weights as weights_lib
from sft_tf.serving import onnx_export

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _fail(message: str) -> None:
    raise UserError(message)


def _check_choices(section: str, values: ml_collections.ConfigDict, **choices) -> None:
    """Each named field of `values` must be one of its allowed values."""
    for field, allowed in choices.items():
        if values[field] not in allowed:
            _fail(f"config.{section}.{field}={values[field]!r} must be one of {', '.join(allowed)}")


def _check_spec(field: str, value: str, required: bool) -> None:
    if not value:
        if required:
            _fail(f"config.{field} is empty; set it, e.g. --config.{field}=folder:/data/train")
        return
    specs.parse_spec(value, field=f"config.{field}")


def validate(config: ml_collections.ConfigDict, command: str = "train") -> None:
    """Checks values and cross-field rules; raises UserError naming the field and the fix.

    Args:
      config: a config built on `base_config()`.
      command: the CLI command about to run; decides which data fields are required. "demo"
        checks as "train" without the random-base warning (the demo pretrains its base).

    Raises:
      UserError: on the first invalid field.
    """
    if command == "train":
        _warn_random_base(config)
    command = "train" if command == "demo" else command
    _check_numbers(to_dict(config))
    if not _NAME_RE.match(config.name):
        _fail(
            f"config.name={config.name!r} must be a folder name (letters, digits, _ . -); "
            "it names the export folder"
        )
    _check_model(config.model, command)
    _check_data(config.data, command)
    _check_labels(config)
    _check_phases(config, command)
    if command == "pretrain":
        _check_pretrain(config.pretrain)
    _check_export(config.export, bool(config.data.validation), command)
    _check_weights_and_blocks(config, command)
    _check_runtime(config.runtime)


def _warn_random_base(config: ml_collections.ConfigDict) -> None:
    """A frozen base with random weights computes random features: the two-phase recipe then
    has nothing to transfer and trains to chance (measured: loss ln 3 on 3 classes, every
    epoch). Training the whole network (all blocks, BatchNorm training) is the exception."""
    p2 = config.phase2
    opened = p2.unfreeze_blocks if p2.epochs else 0  # without phase 2 nothing opens
    if learning.random_frozen_base(config.model.weights, opened, p2.batchnorm):
        say(
            "Warning: config.model.weights is empty: the base starts from random weights, and "
            "frozen it has nothing to transfer. Use a pretrained base (`sft-tf pretrain`, then "
            "--config.model.weights=RUN/backbone.weights.h5), ImageNet weights "
            "(--config.model.weights=imagenet, downloaded once), or train the whole network: "
            "--config.phase1.epochs=0 --config.phase2.unfreeze_blocks=-1 "
            "--config.phase2.batchnorm=train"
        )


def _check_model(m: ml_collections.ConfigDict, command: str) -> None:
    """config.model: the backbone, its size and options, the weights file."""
    spec = backbones.get(m.backbone)
    if m.image_size < spec.min_size:
        _fail(
            f"config.model.image_size={m.image_size} is below {m.backbone}'s minimum "
            f"{spec.min_size}; use >= {spec.min_size}"
        )
    if m.image_size > MAX_IMAGE_SIZE:
        _fail(
            f"config.model.image_size={m.image_size} is above {MAX_IMAGE_SIZE}; keras.applications "
            "models are made for 224-600 px squares (larger ones exhaust memory); use a smaller one"
        )
    if m.alpha is not None and "alpha" not in spec.options:
        _fail(f"config.model.alpha is set but {m.backbone} has no width multiplier; unset it")
    if m.pooling not in ("avg", "max"):
        _fail(f"config.model.pooling={m.pooling!r} must be 'avg' or 'max'")
    if not 0.0 <= m.dropout < 1.0:
        _fail(f"config.model.dropout={m.dropout} must be in [0, 1)")
    local_weights = m.weights not in ("imagenet", "") and "://" not in m.weights
    if local_weights and command != "pretrain" and not Path(m.weights).is_file():
        _fail(
            f"config.model.weights={m.weights!r} is not a file; use 'imagenet', '' "
            "(random init) or the backbone.weights.h5 written by `sft-tf pretrain`"
        )


def _check_data(d: ml_collections.ConfigDict, command: str) -> None:
    """config.data: specs, batch, augmentation, imbalance, caches, limits."""
    if d.global_batch_size < 1:
        _fail(f"config.data.global_batch_size={d.global_batch_size} must be >= 1")
    if d.examples_per_class is not None and d.examples_per_class < 1:
        _fail(f"config.data.examples_per_class={d.examples_per_class} must be >= 1 or unset")
    augment_lib.parse_augment(d.augment, field="config.data.augment")
    needs_train = command in ("train", "audit")
    _check_spec("data.train", d.train, required=needs_train)
    _check_spec("data.validation", d.validation, required=False)
    _check_spec("data.test", d.test, required=command == "evaluate")
    for field in ("train", "test"):
        if d[field].startswith("split:"):
            _fail(
                f"config.data.{field}={d[field]!r}: split:FRACTION is only for "
                "config.data.validation; give a dataset spec"
            )
    _check_choices(
        "data",
        d,
        resize_method=decode.RESIZE_METHODS,
        on_bad_image=scan_lib.BAD_IMAGE_POLICIES,
        on_leakage=audit_lib.LEAKAGE_POLICIES,
        cache=caches.CACHE_MODES,
        resample=balance_lib.RESAMPLING,
    )
    balance_lib.parse_class_weights(d.class_weighting, field="config.data.class_weighting")
    if d.resample != "none" and d.class_weighting.strip() not in ("", "none"):
        _fail(
            f"config.data.resample={d.resample!r} and config.data.class_weighting="
            f"{d.class_weighting!r} both correct the imbalance; set one of them to 'none'"
        )
    if d.cache_memory_mb < 0:
        _fail(f"config.data.cache_memory_mb={d.cache_memory_mb} must be >= 0 (MB)")
    if d.max_image_pixels < 1:
        _fail(
            f"config.data.max_image_pixels={d.max_image_pixels} must be >= 1 (default "
            f"{scan_lib.DEFAULT_MAX_IMAGE_PIXELS}, ~90 megapixels)"
        )


def _check_labels(config: ml_collections.ConfigDict) -> None:
    """The label format: CSV columns, and what multi-label data can and cannot go with."""
    d = config.data
    for column in ("csv_image_column", "csv_label_column", "csv_split_column"):
        if not d[column].strip():
            _fail(f"config.data.{column} is empty; name a column of the CSV header")
    if not d.multi_label:
        return
    if not d.label_delimiter:
        _fail("config.data.label_delimiter is empty; labels in one CSV cell need a separator")
    for name in ("train", "validation", "test"):
        kind = d[name].partition(":")[0]
        if d[name] and kind not in (*sources_lib.MULTI_LABEL_KINDS, "split"):
            _fail(
                f"config.data.{name}={d[name]!r}: config.data.multi_label=true needs csv: or "
                f"tfrecord: data (a {kind}: source has one class per image)"
            )
    if d.resample != "none":
        _fail(
            f"config.data.resample={d.resample!r} draws one class at a time, which multi-label "
            "data does not have; use config.data.class_weighting=balanced (per-label weights)"
        )
    if config.export.calibrate:
        _fail(
            "config.export.calibrate=true scales a softmax; a multi-label model's per-label "
            "thresholds are tuned on validation instead: set it to false"
        )


def _check_phase2_cache(config: ml_collections.ConfigDict) -> None:
    """phase2.cache_frozen: a mode, and for "on" what can be known before the model exists
    (the rest, e.g. dropout below the opened blocks, stops the run before phase 2)."""
    mode, d = config.phase2.cache_frozen, config.data
    if mode not in ("auto", "on", "off"):
        _fail(f"config.phase2.cache_frozen={mode!r} must be one of auto, on, off")
    if mode != "on":
        return
    other = [a.strip() for a in d.augment.split(",") if a.strip() not in ("", "flip")]
    if other:
        _fail(
            f"config.phase2.cache_frozen='on' works with data.augment '' or 'flip' (it is "
            f"{d.augment!r}): {other[0]} changes the images every epoch; use 'auto' or 'off'"
        )
    if config.phase2.unfreeze_blocks < 0:
        _fail(
            "config.phase2.cache_frozen='on' needs a frozen part, but phase2.unfreeze_blocks=-1 "
            "opens the whole base; use 'auto' or 'off'"
        )


def _check_phases(config: ml_collections.ConfigDict, command: str) -> None:
    """config.phase1 and config.phase2 (and the optimizer fields of pretrain)."""
    d, m = config.data, config.model
    cache_features = config.phase1.cache_features
    if cache_features not in ("auto", "on", "off"):
        _fail(f"config.phase1.cache_features={cache_features!r} must be one of auto, on, off")
    if cache_features == "on" and d.augment:
        _fail(
            f"config.phase1.cache_features='on' needs config.data.augment='' (it is "
            f"{d.augment!r}): cached features cannot be augmented; use 'auto' or clear augment"
        )
    _check_phase2_cache(config)
    if m.head_init not in ("default", "zeros"):
        _fail(f"config.model.head_init={m.head_init!r} must be 'default' or 'zeros'")
    for phase in ("phase1", "phase2", "pretrain"):
        _check_optimizer(config[phase], phase, bool(d.validation))
    if config.phase2.l2sp < 0:
        _fail(f"config.phase2.l2sp={config.phase2.l2sp} must be >= 0 (0 turns L2-SP off)")
    if not 0 < config.phase2.layer_decay <= 1:
        _fail(
            f"config.phase2.layer_decay={config.phase2.layer_decay} must be in (0, 1] "
            "(1: the same learning rate for every opened block)"
        )
    for phase in ("phase1", "phase2"):
        p = config[phase]
        if not 0 <= p.epochs <= MAX_EPOCHS:
            _fail(f"config.{phase}.epochs={p.epochs} must be between 0 and {MAX_EPOCHS}")
        if p.learning_rate <= 0:
            _fail(f"config.{phase}.learning_rate={p.learning_rate} must be > 0")
        if not 0 <= p.warmup_epochs <= max(p.epochs, 0):
            _fail(
                f"config.{phase}.warmup_epochs={p.warmup_epochs} must be between 0 and "
                f"{phase}.epochs={p.epochs}"
            )
    if command == "train" and config.phase1.epochs + config.phase2.epochs == 0:
        _fail("config.phase1.epochs and config.phase2.epochs are both 0; nothing to train")
    if config.phase2.unfreeze_blocks < -1:
        _fail(
            f"config.phase2.unfreeze_blocks={config.phase2.unfreeze_blocks} must be >= 0, "
            "or -1 for the whole base"
        )
    if config.phase2.batchnorm not in ("frozen", "train"):
        _fail(f"config.phase2.batchnorm={config.phase2.batchnorm!r} must be 'frozen' or 'train'")


def _check_pretrain(p: ml_collections.ConfigDict) -> None:
    """config.pretrain, for `sft-tf pretrain`."""
    _check_spec("pretrain.train", p.train, required=True)
    _check_spec("pretrain.test", p.test, required=False)
    if not 1 <= p.epochs <= MAX_EPOCHS:
        _fail(f"config.pretrain.epochs={p.epochs} must be between 1 and {MAX_EPOCHS}")
    if p.learning_rate <= 0:
        _fail(f"config.pretrain.learning_rate={p.learning_rate} must be > 0")


def _check_export(e: ml_collections.ConfigDict, has_validation: bool, command: str) -> None:
    """config.export."""
    if e.top_k < 1:
        _fail(f"config.export.top_k={e.top_k} must be >= 1")
    if e.tflite_quantization not in ("float16", "dynamic_range", "int8"):
        _fail(
            f"config.export.tflite_quantization={e.tflite_quantization!r} must be 'float16', "
            "'dynamic_range' or 'int8'"
        )
    if e.representative_examples < 1:
        _fail(f"config.export.representative_examples={e.representative_examples} must be >= 1")
    if not 0 <= e.max_accuracy_drop <= 1:
        _fail(f"config.export.max_accuracy_drop={e.max_accuracy_drop} must be in [0, 1]")
    if e.onnx and e.dir:
        onnx_export.check_installed("config.export.onnx=true")
    if e.calibrate and not has_validation:
        _fail(
            "config.export.calibrate=True fits the temperature on validation data; set "
            "config.data.validation (e.g. split:0.1) or turn calibration off"
        )
    if e.keep < 0:
        _fail(f"config.export.keep={e.keep} must be >= 0 (0 keeps every version)")
    if e.dir and command in ("train", "export"):
        check_writable(e.dir, "config.export.dir")


def _check_weights_and_blocks(config: ml_collections.ConfigDict, command: str) -> None:
    """The weights file's sidecar and the opened block count: both need the backbone."""
    m = config.model
    local_weights = m.weights not in ("imagenet", "") and "://" not in m.weights
    if local_weights and command != "pretrain":
        options = {"alpha": m.alpha} if m.alpha is not None else {}
        weights_lib.check_weights_sidecar(m.weights, m.backbone, options)
    k = config.phase2.unfreeze_blocks
    if command == "train" and config.phase2.epochs and k > 0:
        count = backbones.block_count(m.backbone)
        if k > count:
            _fail(
                f"config.phase2.unfreeze_blocks={k} but {m.backbone} has {count} blocks; use "
                f"1..{count}, or -1 to unfreeze the whole base"
            )


def _check_runtime(r: ml_collections.ConfigDict) -> None:
    """config.runtime."""
    _check_choices(
        "runtime",
        r,
        strategy=strategy_lib.STRATEGIES,
        precision=strategy_lib.PRECISIONS,
        jit_compile=strategy_lib.JIT_COMPILE,
        lr_scaling=strategy_lib.LR_SCALING,
    )
    if r.checkpoint_every_steps < 0:
        _fail(
            f"config.runtime.checkpoint_every_steps={r.checkpoint_every_steps} must be >= 0 "
            "(0: checkpoint at epoch ends only)"
        )
    if r.steps_per_execution is not None and r.steps_per_execution < 1:
        _fail(
            f"config.runtime.steps_per_execution={r.steps_per_execution} must be >= 1, or unset "
            "for the device's default"
        )


def _check_numbers(values: Mapping[str, Any], prefix: str = "config.") -> None:
    """Every float field finite, every int field within int32 (TensorFlow's step counters and
    seeds): NaN or a 20-digit epoch count otherwise passes the range checks and fails later."""
    for key, value in values.items():
        field = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _check_numbers(value, f"{field}.")
        elif isinstance(value, float) and not math.isfinite(value):
            _fail(f"{field}={value} must be a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**31:
            _fail(f"{field}={value} is too large (the limit is {2**31 - 1})")


def _check_optimizer(p: ml_collections.ConfigDict, phase: str, has_validation: bool) -> None:
    if p.optimizer not in ("adam", "adamw", "sgd"):
        _fail(f"config.{phase}.optimizer={p.optimizer!r} must be one of adam, adamw, sgd")
    for field in ("weight_decay", "momentum", "label_smoothing"):
        if not 0 <= p[field] < 1:
            _fail(f"config.{phase}.{field}={p[field]} must be in [0, 1)")
    if p.clipnorm is not None and p.clipnorm <= 0:
        _fail(f"config.{phase}.clipnorm={p.clipnorm} must be > 0, or unset for no clipping")
    if p.early_stopping_patience < 0:
        _fail(f"config.{phase}.early_stopping_patience={p.early_stopping_patience} must be >= 0")
    if p.early_stopping_patience and not has_validation:
        _fail(
            f"config.{phase}.early_stopping_patience={p.early_stopping_patience} needs "
            "config.data.validation (e.g. split:0.1); set one or use 0"
        )


def check_writable(path: str | Path, field: str) -> None:
    """Raises UserError unless `path` is, or can be created as, a writable directory.

    Nothing is created: the nearest existing ancestor must be a writable directory.
    """
    target = Path(path).absolute()
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "not a directory" if not existing.is_dir() else "not writable"
        _fail(f"{field}={str(path)!r} cannot be created: {existing} is {what}; choose another path")
