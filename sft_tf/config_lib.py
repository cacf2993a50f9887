"""The configuration schema: every field, its default and what it means, in one place.

Config files in `configs/` start from `base_config()` and change what their experiment needs.
Code reads fields directly (`config.phase2.learning_rate`), never `config.get(key, default)`: a
field that is not declared here does not exist, and `lock_config=True` turns a mistyped override
into an error.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections
from ml_collections import config_dict

from sft_tf import augment as augment_lib
from sft_tf import backbones, data, model, strategy
from sft_tf.errors import UserError

COMMANDS_NEEDING_DATA = ("train", "pretrain", "evaluate")
# Upper bounds that catch a slip of the keyboard before it costs a long wait or all memory.
MAX_IMAGE_SIZE = 1024
MAX_EPOCHS = 10_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _add_optimizer(section: ml_collections.ConfigDict, optimizer: str = "adam") -> None:
    """The optimizer fields shared by phase1, phase2 and pretrain."""
    # adam | adamw (decoupled weight decay) | sgd (momentum below). The learning rate warms up
    # linearly, then follows a cosine decay to zero over the phase.
    section.optimizer = optimizer
    # Decoupled weight decay for adamw and sgd (adam has none; use adamw for that).
    section.weight_decay = 0.0
    # sgd only: momentum and Nesterov.
    section.momentum = 0.9
    section.nesterov = False
    # Clip each gradient to this L2 norm (None: no clipping).
    section.clipnorm = config_dict.placeholder(float)
    # Label smoothing e: the target puts 1 - e on the true class and e/C on every class.
    section.label_smoothing = 0.0
    # Stop after this many epochs without a better validation loss and go back to the best
    # epoch's weights (0: off; needs data.validation).
    section.early_stopping_patience = 0


def base_config() -> ml_collections.ConfigDict:
    """Returns the whole schema with defaults; configs override what they need."""
    c = ml_collections.ConfigDict()
    # Experiment name; also the export folder: <export.dir>/<name>/<version>/.
    c.name = "model"
    # Seeds weight init, shuffling, few-shot sampling and augmentation.
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    # A keras.applications class name, e.g. "EfficientNetB0", "MobileNetV2", "ResNet50".
    c.model.backbone = "EfficientNetB0"
    # "imagenet" (Keras downloads them), "" for random init, or a weights file: the
    # backbone.weights.h5 written by `sft-tf pretrain`, or a Keras "no top" weights file.
    c.model.weights = "imagenet"
    # Square input size in pixels; images are resized to it in the input pipeline and in the export.
    c.model.image_size = 224
    # Width multiplier of MobileNet, MobileNetV2 and MobileNetV3 (None: the backbone's default 1.0).
    c.model.alpha = config_dict.placeholder(float)
    # Global pooling of the base's feature map: "avg" or "max".
    c.model.pooling = "avg"
    # Dropout rate between the pooled features and the new Dense head.
    c.model.dropout = 0.2
    # "zeros" starts the head at all-zero weights (every class 1/C, no random early bias);
    # "default" uses Keras's Glorot initialisation.
    c.model.head_init = "default"

    c.data = ml_collections.ConfigDict()
    # Dataset specs: "folder:PATH" (one sub-folder per class), "tfds:NAME[:SPLIT]" (TFDS slicing,
    # e.g. tfds:tf_flowers:train[:80%]), "tfrecord:GLOB" (tf.train.Example with image/encoded,
    # image/class/label, optional image/class/text) or "fashion_mnist:SPLIT[:DIR]" (SPLIT is
    # train or test; DIR holds the IDX files, default: Debian's then Keras's location).
    c.data.train = ""
    # Optional; "" means no validation during training. "split:FRACTION" (e.g. split:0.1) holds
    # out that share of each training class, seeded by config.seed.
    c.data.validation = ""
    # Optional; "" means no test evaluation (and no test accuracy in metrics.json).
    c.data.test = ""
    # Images per optimizer step summed over all replicas; the only batch size there is.
    c.data.global_batch_size = 32
    # Optional comma-separated subset of class names or ids, e.g. "5,6,7,8,9" or "cat,dog";
    # labels are renumbered in this order. Applies to every split.
    c.data.classes = config_dict.placeholder(str)
    # Optional few-shot sampling: keep this many training examples per class (seeded).
    c.data.examples_per_class = config_dict.placeholder(int)
    # Comma-separated training augmentations from: crop (random-resized crop, 50-100% of the
    # area), flip, translate, rotate, zoom, contrast, randaugment (Keras RandAugment: two random
    # ops per image), mixup, cutmix (blend two images and their labels; with both, each batch
    # gets one of them).
    c.data.augment = "flip"
    # Class imbalance: "none"; "balanced" weights each training example by
    # n / (classes * examples of its class); or "NAME:WEIGHT,..." (unlisted classes weigh 1).
    # Applied as per-example loss weights in the input pipeline.
    c.data.class_weighting = "none"
    # "balanced" draws every class equally often in training (one stream per class, picked
    # at random: rare classes' images repeat more often); an epoch stays len(train) // batch
    # steps. Use either this or class_weighting, not both.
    c.data.resample = "none"
    # TFDS data dir for tfds: specs, local or gs:// ("" is TFDS's default, ~/tensorflow_datasets).
    c.data.tfds_data_dir = ""
    # How images become image_size squares (training and the export alike): "resize" stretches,
    # "crop" keeps the centre square of the short side, "pad" letterboxes with black.
    c.data.resize_method = "resize"
    # Files that cannot be decoded (empty, truncated, not an image): "skip" drops them and lists
    # them at the start; "fail" lists them and stops before training.
    c.data.on_bad_image = "skip"
    # Images with more pixels than this (width x height, read from the file header) are bad
    # files too, never decoded: a 1 MB PNG can decode to gigabytes. The default is Pillow's
    # decompression-bomb limit (~90 megapixels, e.g. 9500 x 9500), far above any photo size a
    # classifier needs.
    c.data.max_image_pixels = data.DEFAULT_MAX_IMAGE_PIXELS
    # Decoded-pixel cache: "auto" (memory if a split fits in cache_memory_mb, else a file in the
    # workdir), "memory", "disk" or "off" (decode every epoch; flat memory).
    c.data.cache = "auto"
    # Memory budget (MB) of the in-memory pixel cache and of shuffle buffers without one.
    c.data.cache_memory_mb = 2048
    # Folder for on-disk pixel caches ("" means <system temp dir>/sft_tf_cache). File names hash
    # the data, image size and resize method, so a cache is only ever reused for the same pixels.
    c.data.cache_dir = ""

    # Phase 1: the base is frozen, only the new head trains.
    c.phase1 = ml_collections.ConfigDict()
    c.phase1.epochs = 5
    # Peak learning rate (Adam); cosine decay to zero over the phase.
    c.phase1.learning_rate = 1e-3
    # Linear warm-up from zero to the peak over this many epochs (may be fractional).
    c.phase1.warmup_epochs = 0.0
    # Run the frozen base once per image and train the head on the cached pooled features:
    # "auto" does so when data.augment is empty (augmented images change every epoch), "on"
    # requires that, "off" runs the base every step.
    c.phase1.cache_features = "auto"
    _add_optimizer(c.phase1)

    # Phase 2: the top blocks of the base are unfrozen and training continues at a lower rate.
    c.phase2 = ml_collections.ConfigDict()
    # 0 skips phase 2.
    c.phase2.epochs = 5
    c.phase2.learning_rate = 1e-4
    c.phase2.warmup_epochs = 1.0
    # How many of the base's top blocks to unfreeze (whole blocks); -1 unfreezes the whole base.
    c.phase2.unfreeze_blocks = 2
    # "frozen": BatchNorm layers keep their statistics and scale (inference mode), the safe
    # default for small datasets; "train": BN in unfrozen blocks adapts to the new data.
    c.phase2.batchnorm = "frozen"
    # With batchnorm="train", re-estimate BN statistics on this many training batches after the
    # phase (0 turns it off): short runs leave BN moving averages far from the data's.
    c.phase2.recalibration_batches = 50
    _add_optimizer(c.phase2)
    # L2-SP strength: adds strength * ||w - w_start||^2 over the opened layers' weights, pulling
    # them toward the pretrained values (0: plain fine-tuning).
    c.phase2.l2sp = 0.0
    # Discriminative learning rates: the top opened block trains at the phase's rate, the one
    # below at rate * layer_decay, then * layer_decay**2, ... (1.0: one rate for all).
    c.phase2.layer_decay = 1.0

    # Source pretraining (`sft-tf pretrain`): train the backbone from random init on a source
    # task, then save it for `train` as model.weights=<workdir>/backbone.weights.h5.
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.train = ""
    c.pretrain.test = ""
    # Optional comma-separated source classes (names or ids), as data.classes.
    c.pretrain.classes = config_dict.placeholder(str)
    c.pretrain.epochs = 5
    c.pretrain.learning_rate = 2e-3
    _add_optimizer(c.pretrain)
    # Batches used to re-estimate BatchNorm statistics before saving the backbone.
    c.pretrain.recalibration_batches = 50

    c.export = ml_collections.ConfigDict()
    # Export root; "" skips the export. Exports go to <dir>/<name>/<version>/.
    c.export.dir = "saved_models"
    # How many class names and scores each prediction returns (capped at the class count).
    c.export.top_k = 5
    # Keep only this many newest versions after each export (0 keeps all); older ones are deleted.
    c.export.keep = 0
    # Publish even if the class names differ from the newest existing version's. Off: such an
    # export (and the training run, before it starts) stops, because TF Serving would switch
    # to the new label set under the same model name without notice.
    c.export.allow_class_change = False
    # Also write a TFLite model (assets.extra/tflite/model.tflite + labels.txt) in each version.
    c.export.tflite = False
    # TFLite weights: "float16" (half size) or "dynamic_range" (int8 weights, quarter size).
    c.export.tflite_quantization = "float16"
    # Temperature scaling: fit one temperature on the validation set after training (minimum
    # negative log-likelihood) and divide the export's logits by it, so the probabilities it
    # serves are calibrated. Needs data.validation; the choice of class never changes.
    c.export.calibrate = False

    c.runtime = ml_collections.ConfigDict()
    # auto | default | one_device | mirrored | multi_worker | tpu (the --strategy flag wins).
    # auto: a TPU when one is attached, else Mirrored over several GPUs, else one device.
    c.runtime.strategy = "auto"
    # TPU name or grpc:// address for strategy tpu; "" means the attached one (Colab, TPU VM).
    # The --tpu flag wins.
    c.runtime.tpu = ""
    # auto | float32 | mixed_float16 | mixed_bfloat16. auto: bfloat16 on TPU, float16 on GPUs
    # with tensor cores, float32 on CPU. The head's Dense and softmax always compute in float32.
    c.runtime.precision = "auto"
    # auto | true | false: XLA-compile the train step. auto leaves it to Keras (off on CPU and
    # under tf.distribute; TPUs always compile). XLA made CPU training 4x slower here.
    c.runtime.jit_compile = "auto"
    # Training steps per compiled call (None: 32 on TPU, whose short steps would otherwise wait
    # on the host; 1 elsewhere, so callbacks and progress see every step).
    c.runtime.steps_per_execution = config_dict.placeholder(int)
    # none | linear. linear multiplies every learning rate (phase1, phase2, pretrain) by
    # data.global_batch_size / 256, for moving a recipe to a bigger or smaller global batch.
    c.runtime.lr_scaling = "none"
    # Checkpoint every this many training steps as well as at each epoch end (0: epoch ends
    # only). A killed run loses at most the steps since the last checkpoint.
    c.runtime.checkpoint_every_steps = 0
    # true: tf.config.experimental.enable_op_determinism(), so every op, GPU kernels included,
    # gives the same result for the same inputs (GPU training gets slower). On CPU a run is
    # repeatable without it, and a resumed run ends with the uninterrupted run's weights bit
    # for bit; this makes that hold on GPUs too.
    c.runtime.deterministic = False
    return c


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
    data.parse_spec(value, field=f"config.{field}")


def validate(config: ml_collections.ConfigDict, command: str = "train") -> None:
    """Checks values and cross-field rules; raises UserError naming the field and the fix.

    Args:
      config: a config built on `base_config()`.
      command: the CLI command about to run; decides which data fields are required.

    Raises:
      UserError: on the first invalid field.
    """
    _check_numbers(to_dict(config))
    if not _NAME_RE.match(config.name):
        _fail(
            f"config.name={config.name!r} must be a folder name (letters, digits, _ . -); "
            "it names the export folder"
        )
    m = config.model
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
    d = config.data
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
        resize_method=data.RESIZE_METHODS,
        on_bad_image=data.BAD_IMAGE_POLICIES,
        cache=data.CACHE_MODES,
        resample=augment_lib.RESAMPLING,
    )
    augment_lib.parse_class_weights(d.class_weighting, field="config.data.class_weighting")
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
            f"{data.DEFAULT_MAX_IMAGE_PIXELS}, ~90 megapixels)"
        )
    cache_features = config.phase1.cache_features
    if cache_features not in ("auto", "on", "off"):
        _fail(f"config.phase1.cache_features={cache_features!r} must be one of auto, on, off")
    if cache_features == "on" and d.augment:
        _fail(
            f"config.phase1.cache_features='on' needs config.data.augment='' (it is "
            f"{d.augment!r}): cached features cannot be augmented; use 'auto' or clear augment"
        )
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
    p = config.pretrain
    if command == "pretrain":
        _check_spec("pretrain.train", p.train, required=True)
        _check_spec("pretrain.test", p.test, required=False)
        if not 1 <= p.epochs <= MAX_EPOCHS:
            _fail(f"config.pretrain.epochs={p.epochs} must be between 1 and {MAX_EPOCHS}")
        if p.learning_rate <= 0:
            _fail(f"config.pretrain.learning_rate={p.learning_rate} must be > 0")
    if config.export.top_k < 1:
        _fail(f"config.export.top_k={config.export.top_k} must be >= 1")
    if config.export.tflite_quantization not in ("float16", "dynamic_range"):
        _fail(
            f"config.export.tflite_quantization={config.export.tflite_quantization!r} must be "
            "'float16' or 'dynamic_range'"
        )
    if config.export.calibrate and not d.validation:
        _fail(
            "config.export.calibrate=True fits the temperature on validation data; set "
            "config.data.validation (e.g. split:0.1) or turn calibration off"
        )
    if config.export.keep < 0:
        _fail(f"config.export.keep={config.export.keep} must be >= 0 (0 keeps every version)")
    if config.export.dir and command in ("train", "export"):
        check_writable(config.export.dir, "config.export.dir")
    if local_weights and command != "pretrain":
        options = {"alpha": m.alpha} if m.alpha is not None else {}
        model.check_weights_sidecar(m.weights, m.backbone, options)
    k = config.phase2.unfreeze_blocks
    if command == "train" and config.phase2.epochs and k > 0:
        count = backbones.block_count(m.backbone)
        if k > count:
            _fail(
                f"config.phase2.unfreeze_blocks={k} but {m.backbone} has {count} blocks; use "
                f"1..{count}, or -1 to unfreeze the whole base"
            )
    r = config.runtime
    _check_choices(
        "runtime",
        r,
        strategy=strategy.STRATEGIES,
        precision=strategy.PRECISIONS,
        jit_compile=strategy.JIT_COMPILE,
        lr_scaling=strategy.LR_SCALING,
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


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Returns the config as plain JSON-able dicts (placeholders left unset become None)."""
    return json.loads(config.to_json_best_effort())


def save(config: ml_collections.ConfigDict, path: str | Path) -> None:
    """Writes the resolved config as JSON (temp file + rename, so it is never half-written)."""
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _merge(target: ml_collections.ConfigDict, values: Mapping[str, Any], prefix: str) -> None:
    for key, value in values.items():
        if key not in target:
            raise UserError(f"{prefix}{key} is not a config field of this sft_tf version")
        if isinstance(value, Mapping):
            _merge(target[key], value, f"{prefix}{key}.")
        else:
            target[key] = value


def load(path: str | Path) -> ml_collections.ConfigDict:
    """Reads a config.json written by `save` back onto the schema (so new fields get defaults)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; is this a workdir written by `sft-tf train`?")
    config = base_config()
    _merge(config, json.loads(path.read_text()), prefix="config.")
    config.lock()
    return config


def scratch_baseline(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The same experiment trained from random init: the baseline fine-tuning must beat.

    One phase (phase 2) with the whole base open and BatchNorm training, for as many epochs as
    both fine-tuning phases together, at the source-training learning rate; no export.
    """
    scratch = copy.deepcopy(config)
    scratch.model.weights = ""
    scratch.phase2.epochs = config.phase1.epochs + config.phase2.epochs
    scratch.phase1.epochs = 0
    scratch.phase2.unfreeze_blocks = -1
    scratch.phase2.batchnorm = "train"
    scratch.phase2.learning_rate = config.pretrain.learning_rate
    scratch.phase2.warmup_epochs = min(1.0, scratch.phase2.epochs / 5)
    scratch.export.dir = ""
    scratch.name = f"{config.name}_scratch"
    return scratch


def check_config_file(spec: str) -> None:
    """Loads a --config file the way ml_collections will; one-line UserError when it cannot.

    spec: the flag's value, `PATH` or `PATH:ARGUMENT` (passed to get_config).

    Raises:
      UserError: the file is missing, does not compile, raises, has no get_config(), or
        get_config() does not return a ConfigDict. The message names the file and the line.
    """
    path, _, argument = spec.partition(":")
    field = f"--config={spec}"
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        close = difflib.get_close_matches(os.path.basename(path), names, n=1)
        hint = f"did you mean {os.path.join(os.path.dirname(path), close[0])}?" if close else ""
        _fail(f"{field}: no such file {path}; {hint or 'give the path of a configs/*.py file'}")
    try:
        code = compile(Path(path).read_bytes(), path, "exec")
    except SyntaxError as e:
        _fail(f"{field}: syntax error in {path} line {e.lineno}: {e.msg}; fix the file")
    namespace: dict[str, Any] = {"__file__": path, "__name__": "sft_tf_config_check"}
    try:
        exec(code, namespace)
        get_config = namespace.get("get_config")
        if not callable(get_config):
            _fail(
                f"{field}: {path} defines no get_config(); a config file's get_config() returns "
                "config_lib.base_config() with changes (see configs/tiny.py)"
            )
        result = get_config(argument) if argument else get_config()
    except UserError:
        raise
    except Exception as e:
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        where = f" line {lines[-1]}" if lines else ""
        _fail(f"{field}: {path}{where} raised {type(e).__name__}: {e}; fix the file")
    if not isinstance(result, ml_collections.ConfigDict):
        _fail(
            f"{field}: get_config() in {path} returned {type(result).__name__}, not a "
            "ConfigDict; end it with `return config`"
        )
