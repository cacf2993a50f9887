"""Config validation before a command runs: `validate` checks every field and cross-field rule
and raises one UserError naming the field and the fix. The checks on plain values are in
`values` (run first, and by the CLI before TensorFlow loads; the backbone's name, minimum size
and width multiplier included); this module adds the ones that need the built backbone (block
count), the weights file's sidecar, or the lists of choices kept beside the code that uses them
(augmentations, caches, strategies).
"""

from __future__ import annotations

import ml_collections

from sft_tf.config import values as values_lib
from sft_tf.data import audit as audit_lib
from sft_tf.data import augment as augment_lib
from sft_tf.data import balance as balance_lib
from sft_tf.data import caches, decode
from sft_tf.data import scan as scan_lib
from sft_tf.data import sources as sources_lib
from sft_tf.distribute import strategy as strategy_lib
from sft_tf.errors import UserError
from sft_tf.evaluation import learning
from sft_tf.log import say
from sft_tf.model import backbones, catalog
from sft_tf.model import weights as weights_lib
from sft_tf.serving import onnx_export


def _fail(message: str) -> None:
    raise UserError(message)


def _check_choices(section: str, values: ml_collections.ConfigDict, **choices) -> None:
    """Each named field of `values` must be one of its allowed values."""
    for field, allowed in choices.items():
        if values[field] not in allowed:
            _fail(f"config.{section}.{field}={values[field]!r} must be one of {', '.join(allowed)}")


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
        if not config.export.dir:
            say(
                "Note: config.export.dir is empty, so this run exports no model; "
                "`sft-tf export --workdir=DIR --config.export.dir=saved_models` exports it later"
            )
    command = "train" if command == "demo" else command
    values_lib.check_values(config, command)  # also run by the CLI before TensorFlow loads
    _check_data(config.data, command)
    _check_labels(config)
    if config.export.onnx and config.export.dir:
        onnx_export.check_installed("config.export.onnx=true")
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


def _check_data(d: ml_collections.ConfigDict, command: str) -> None:
    """config.data: specs, batch, augmentation, imbalance, caches, limits."""
    augment_lib.parse_augment(d.augment, field="config.data.augment")
    needs_train = command in ("train", "audit")
    values_lib.check_spec("data.train", d.train, required=needs_train)
    values_lib.check_spec("data.validation", d.validation, required=False)
    values_lib.check_spec("data.test", d.test, required=command == "evaluate")
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


def _check_weights_and_blocks(config: ml_collections.ConfigDict, command: str) -> None:
    """The weights file's sidecar and the opened block count: both need the backbone."""
    m = config.model
    local_weights = m.weights not in ("imagenet", "") and "://" not in m.weights
    if local_weights and command != "pretrain":
        options = {"alpha": m.alpha} if m.alpha is not None else {}
        weights_lib.check_weights_sidecar(m.weights, m.backbone, options)
    k = config.phase2.unfreeze_blocks
    # Counting the blocks builds the backbone (0.7-1 s for MobileNetV2, more for big ones).
    if command == "train" and config.phase2.epochs and k > catalog.FEWEST_BLOCKS:
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
