"""The config checks that need only the values: numbers finite and in range, cross-field
rules, paths that must exist or be creatable. They import nothing heavy, so the CLI runs them
before TensorFlow loads (a typo costs a fraction of a second, not TensorFlow's import), and
`validation.validate` runs them first. The backbone's name, minimum size and options come from
`sft_tf.model.catalog`, a table that loads no TensorFlow either. The checks that need a built
backbone or TensorFlow's own lists (block counts, augmentations, strategies) are in
`validation`.
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
from sft_tf.config.schema import DEFAULT_MAX_IMAGE_PIXELS, MAX_EPOCHS, MAX_IMAGE_SIZE
from sft_tf.data import specs
from sft_tf.errors import UserError
from sft_tf.model import catalog
from sft_tf.training.cache_choice import MODES as CACHE_MODES

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _fail(message: str) -> None:
    raise UserError(message)


def check_values(config: ml_collections.ConfigDict, command: str) -> None:
    """Raises UserError naming the first field whose value is out of range and the fix.

    Args:
      config: a config built on `base_config()`.
      command: the command about to run ("demo" checks as "train").
    """
    numbers = to_dict(config)
    _check_numbers(numbers, finite_only=True)  # a NaN passes comparisons: before the ranges
    if not _NAME_RE.match(config.name):
        _fail(
            f"config.name={config.name!r} must be a folder name (letters, digits, _ . -); "
            "it names the export folder"
        )
    _check_model(config.model, command)
    _check_data(config.data)
    _check_phases(config, command)
    if command == "pretrain":
        _check_pretrain(config.pretrain)
    _check_export(config.export, config.data, command)
    _check_runtime(config.runtime)
    # After the fields' own ranges, so `phase1.epochs=10**20` is told its real limit (10000).
    _check_numbers(numbers, finite_only=False)


def check_spec(field: str, value: str, required: bool) -> None:
    """A data spec (`specs.parse_spec`); `required` ones must be set."""
    if not value:
        if required:
            _fail(f"config.{field} is empty; set it, e.g. --config.{field}=folder:/data/train")
        return
    specs.parse_spec(value, field=f"config.{field}")


def _check_model(m: ml_collections.ConfigDict, command: str) -> None:
    """config.model: the backbone (name, minimum size, width multiplier), size, head and the
    weights file. The backbone's block count needs the built model: `validation`."""
    spec = catalog.check_model(m.backbone, m.image_size, {})
    if m.alpha is not None and "alpha" not in spec.options:
        _fail(f"config.model.alpha is set but {m.backbone} has no width multiplier; unset it")
    if m.image_size > MAX_IMAGE_SIZE:
        _fail(
            f"config.model.image_size={m.image_size} is above {MAX_IMAGE_SIZE}; keras.applications "
            "models are made for 224-600 px squares (larger ones exhaust memory); use a smaller one"
        )
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


def _check_data(d: ml_collections.ConfigDict) -> None:
    """config.data: batch, few-shot count, cache budget, pixel limit, where split: may go."""
    if d.global_batch_size < 1:
        _fail(f"config.data.global_batch_size={d.global_batch_size} must be >= 1")
    if d.examples_per_class is not None and d.examples_per_class < 1:
        _fail(f"config.data.examples_per_class={d.examples_per_class} must be >= 1 or unset")
    for field in ("train", "test"):
        if d[field].startswith("split:"):
            _fail(
                f"config.data.{field}={d[field]!r}: split:FRACTION is only for "
                "config.data.validation; give a dataset spec"
            )
    if d.cache_memory_mb < 0:
        _fail(f"config.data.cache_memory_mb={d.cache_memory_mb} must be >= 0 (MB)")
    if d.max_image_pixels < 1:
        _fail(
            f"config.data.max_image_pixels={d.max_image_pixels} must be >= 1 (default "
            f"{DEFAULT_MAX_IMAGE_PIXELS}, ~90 megapixels)"
        )


def _check_phase2_cache(config: ml_collections.ConfigDict) -> None:
    """phase2.cache_frozen: a mode, and for "on" what can be known before the model exists
    (the rest, e.g. dropout below the opened blocks, stops the run before phase 2)."""
    mode, d = config.phase2.cache_frozen, config.data
    if mode not in CACHE_MODES:
        _fail(f"config.phase2.cache_frozen={mode!r} must be one of {', '.join(CACHE_MODES)}")
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
    if cache_features not in CACHE_MODES:
        _fail(
            f"config.phase1.cache_features={cache_features!r} must be one of "
            f"{', '.join(CACHE_MODES)}"
        )
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
    check_spec("pretrain.train", p.train, required=True)
    check_spec("pretrain.test", p.test, required=False)
    if not 1 <= p.epochs <= MAX_EPOCHS:
        _fail(f"config.pretrain.epochs={p.epochs} must be between 1 and {MAX_EPOCHS}")
    if p.learning_rate <= 0:
        _fail(f"config.pretrain.learning_rate={p.learning_rate} must be > 0")


def _check_export(e: ml_collections.ConfigDict, d: ml_collections.ConfigDict, command: str) -> None:
    """config.export (whether ONNX can be written: validation)."""
    if e.calibrate and d.multi_label:
        _fail(
            "config.export.calibrate=true scales a softmax; a multi-label model's per-label "
            "thresholds are tuned on validation instead: set it to false"
        )
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
    if e.calibrate and not d.validation:
        _fail(
            "config.export.calibrate=True fits the temperature on validation data; set "
            "config.data.validation (e.g. split:0.1) or turn calibration off"
        )
    if e.keep < 0:
        _fail(f"config.export.keep={e.keep} must be >= 0 (0 keeps every version)")
    if e.dir and command in ("train", "export"):
        check_writable(e.dir, "config.export.dir")


def _check_runtime(r: ml_collections.ConfigDict) -> None:
    """config.runtime's numbers (its named choices: validation)."""
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


def _check_numbers(values: Mapping[str, Any], finite_only: bool, prefix: str = "config.") -> None:
    """Every float field finite, and unless `finite_only` every int field within int32
    (TensorFlow's step counters and seeds): NaN or a 20-digit count in a field without a range
    of its own would otherwise fail later, inside TensorFlow."""
    for key, value in values.items():
        field = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _check_numbers(value, finite_only, f"{field}.")
        elif isinstance(value, float) and not math.isfinite(value):
            _fail(f"{field}={value} must be a finite number")
        elif finite_only or isinstance(value, bool) or not isinstance(value, int):
            continue
        elif abs(value) >= 2**31:
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
