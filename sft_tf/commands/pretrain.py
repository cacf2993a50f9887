"""`sft-tf pretrain`: train a backbone from scratch on a source task, for `train` to start from.

All layers train with BatchNorm in training mode; then BN statistics are re-estimated on source
data (without that the saved base scores near chance in inference mode) and
<workdir>/backbone.weights.h5 is written with a JSON sidecar (source classes, accuracy). A rerun
with the same model, source and seed reuses the saved backbone.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import ml_collections

from sft_tf import timing
from sft_tf.config import files as config_files
from sft_tf.data import examples as examples_lib
from sft_tf.distribute import workers
from sft_tf.lock import WorkdirLock
from sft_tf.log import say
from sft_tf.model import classifier, unfreeze
from sft_tf.model import weights as weights_lib
from sft_tf.training import inputs, outcome, phases, recipe, runtime, screening
from sft_tf.training.layout import BACKBONE_FILE, CONFIG_FILE


def pretrain(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Trains and saves the source backbone (or reuses the one already there).

    Returns:
      The sidecar's contents.

    Raises:
      UserError: bad input (nothing written then), or a locked workdir.
    """
    timing.start()  # its time is its own: a train run after it (sft-tf demo) starts afresh
    lock = WorkdirLock()
    try:
        return _pretrain(config, Path(workdir), lock)
    finally:
        lock.release()


def _pretrain(config: ml_collections.ConfigDict, workdir: Path, lock: WorkdirLock) -> dict:
    key = config_files.digest(
        config.model, config.pretrain, config.data.global_batch_size, config.seed
    )
    reused = _saved_backbone(workdir / BACKBONE_FILE, key)
    if reused is not None:
        return reused
    # --- Runtime (first: multi-worker collectives must be set up before any TF op runs) -------
    strategy, compile_options = runtime.build_runtime(config)

    # --- Inputs (checked before the workdir is touched) ----------------------------------------
    train, test = _source_splits(config)
    # Only the chief keeps what it writes; other workers write into a scratch dir (output_dir).
    workdir = workers.output_dir(workdir, strategy)
    lock.acquire(workdir)
    config_files.save(config, workdir / CONFIG_FILE)
    keras.utils.set_random_seed(config.seed)
    inputs.describe_splits("Source data:", train=train, test=test)
    train_input, steps = inputs.train_input(config, strategy, train, balance=False)

    # --- Model: everything trains, BatchNorm included ------------------------------------------
    p = config.pretrain
    with strategy.scope():
        model = recipe.build_model(
            config, len(train.class_names), weights="", batchnorm="train", multi_label=False
        )
        unfreeze.unfreeze_top_blocks(
            classifier.get_base(model), config.model.backbone, -1, train_batchnorm=True
        )
        rate = recipe.phase_learning_rate(config, p.learning_rate)
        recipe.compile_phase(
            model, rate, min(1.0, p.epochs / 5), p.epochs, steps, compile_options, phase=p
        )
    workers.allow_multi_worker_fit(model, strategy)
    say(f"Source training from scratch: {classifier.describe_trainable(model)}")
    batches = train_input((0, 0), p.epochs)
    phases.fit(model, batches, None, [], p.epochs, epochs=p.epochs, steps_per_epoch=steps)

    # --- BatchNorm statistics, the source accuracy, the saved backbone --------------------------
    info = {"digest": key, **_recalibrate_and_measure(config, model, train, test)}
    weights_path = workdir / BACKBONE_FILE
    weights_lib.save_backbone_weights(classifier.get_base(model), weights_path, info)
    say(f"Saved the backbone to {weights_path}")
    workers.remove_scratch(workdir, strategy)
    return info


def _saved_backbone(weights_path: Path, key: str) -> dict | None:
    """The sidecar of a backbone already trained with this config (None: train one)."""
    sidecar = weights_lib.sidecar_path(weights_path)
    if not (weights_path.is_file() and sidecar.is_file()):
        return None
    info = json.loads(sidecar.read_text())
    if info.get("digest") != key:
        return None
    say(
        f"Pretrained backbone already in {weights_path} (source accuracy "
        f"{info['source_test_accuracy']}); reusing it"
    )
    return info


def _source_splits(config: ml_collections.ConfigDict):
    """`config.pretrain`'s train and test splits, listed, checked and screened."""
    p, d = config.pretrain, config.data
    # The source task is single-label whatever the target task is.
    train = inputs.load_split(
        p.train, "config.pretrain.train", p.classes, "config.pretrain.classes", d, False
    )
    test = inputs.load_split(
        p.test, "config.pretrain.test", p.classes, "config.pretrain.classes", d, False
    )
    if test is not None:
        examples_lib.check_same_classes(train.class_names, test, "config.pretrain.test")
    splits = {"train": train, **({"test": test} if test is not None else {})}
    screened = screening.screen_splits(
        splits,
        d.on_bad_image,
        d.max_image_pixels,
        d.on_leakage,
        keep=screening.decoded_to_keep(config),
        image_size=config.model.image_size,
    )
    train, test = screened["train"], screened.get("test")
    inputs.check_batch_fits(train, d.global_batch_size, "config.pretrain.train")
    return train, test


def _recalibrate_and_measure(config, model: keras.Model, train, test) -> dict:
    """Re-estimates BatchNorm statistics on source data; the sidecar's description."""
    p, class_names = config.pretrain, list(train.class_names)
    test_ds = inputs.make_dataset(config, test, training=False, one_hot=False) if test else None
    before = outcome.test_metrics(model, config, test, class_names, test_ds)
    batches = inputs.make_dataset(config, train, training=True, augment=False)
    used = unfreeze.recalibrate_batchnorm(model, batches, p.recalibration_batches)
    after = outcome.test_metrics(model, config, test, class_names, test_ds)
    if after is not None:
        say(
            f"Source test accuracy: {before['accuracy']:.4f} with training-time BatchNorm "
            f"statistics, {after['accuracy']:.4f} after re-estimating them on {used} batches"
        )
    return {
        "backbone": config.model.backbone,
        "options": {} if config.model.alpha is None else {"alpha": config.model.alpha},
        "image_size": config.model.image_size,
        "source": p.train,
        "source_classes": class_names,
        "source_test_accuracy": None if after is None else after["accuracy"],
        "source_test_accuracy_before_bn_recalibration": None
        if before is None
        else before["accuracy"],
    }
