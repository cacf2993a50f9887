"""The configuration schema: every field, its default and what it means, in one place.

Config files in `configs/` start from `base_config()` and change what their experiment needs.
Code reads fields directly (`config.phase2.learning_rate`), never `config.get(key, default)`: a
field that is not declared here does not exist, and `lock_config=True` turns a mistyped override
into an error.
"""

from __future__ import annotations

import copy

import ml_collections
from ml_collections import config_dict

# Upper bounds that catch a slip of the keyboard before it costs a long wait or all memory.
MAX_IMAGE_SIZE = 1024
# Pillow's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS), fixed here so that a Pillow
# upgrade does not change configs.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


MAX_EPOCHS = 10_000


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
    # image/class/label, optional image/class/text), "csv:PATH[:SPLIT]" (a CSV with a header
    # row: image path and label columns, paths relative to the CSV's folder; with :SPLIT only
    # the rows whose split column holds SPLIT) or "fashion_mnist:SPLIT[:DIR]" (SPLIT is train or
    # test; DIR holds the IDX files, default: Debian's then Keras's location).
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
    # Multi-label classification: every image has a set of labels (none, one or several), one
    # sigmoid output per label, binary cross-entropy, a threshold per label tuned on validation.
    # Labels come from csv: specs (split on label_delimiter) or tfrecord: specs (several
    # image/class/label ids per record); class folders cannot express it.
    c.data.multi_label = False
    # What separates the labels of one image in a multi-label csv: label column ("cat|dog").
    c.data.label_delimiter = "|"
    # The columns of csv: specs: image path, label (class name; multi-label: names joined by
    # label_delimiter) and split (only read for csv:PATH:SPLIT).
    c.data.csv_image_column = "image"
    c.data.csv_label_column = "label"
    c.data.csv_split_column = "split"
    # TFDS data dir for tfds: specs, local or gs:// ("" is TFDS's default, ~/tensorflow_datasets).
    c.data.tfds_data_dir = ""
    # How images become image_size squares (training and the export alike): "resize" stretches,
    # "crop" keeps the centre square of the short side, "pad" letterboxes with black.
    c.data.resize_method = "resize"
    # Files that cannot be decoded (empty, truncated, not an image): "skip" drops them and lists
    # them at the start; "fail" lists them and stops before training.
    c.data.on_bad_image = "skip"
    # Images shared between splits (train/validation, train/test, validation/test) — identical
    # files, or near-duplicates (the same picture resized, re-encoded or brightened; see
    # data/near_duplicates.py) — inflate the later split's score: "fail" stops the run before
    # training, "warn" says how many and goes on, "drop" removes the earlier split's copies
    # and says how many.
    c.data.on_leakage = "fail"
    # A text file of image paths (one per line; records: "SPEC #POSITION") left out of every
    # split, e.g. the audit's exclude_suggested.txt once reviewed. "" for none.
    c.data.exclude = ""
    # Images with more pixels than this (width x height, read from the file header) are bad
    # files too, never decoded: a 1 MB PNG can decode to gigabytes. The default is Pillow's
    # decompression-bomb limit (~90 megapixels, e.g. 9500 x 9500), far above any photo size a
    # classifier needs.
    c.data.max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS
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
    # Epochs of head training (0 skips phase 1: phase 2 then starts from the random head).
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
    # Peak learning rate, ten times below phase 1's: the opened blocks start from pretrained
    # weights that large steps would undo. Cosine decay to zero over the phase.
    c.phase2.learning_rate = 1e-4
    # Linear warm-up over this many epochs: the opened blocks' first steps, from a head
    # trained on frozen features, stay small while the optimizer's moments settle.
    c.phase2.warmup_epochs = 1.0
    # How many of the base's top blocks to unfreeze (whole blocks); -1 unfreezes the whole base.
    c.phase2.unfreeze_blocks = 2
    # "frozen": BatchNorm layers keep their statistics and scale (inference mode), the safe
    # default for small datasets; "train": BN in unfrozen blocks adapts to the new data.
    c.phase2.batchnorm = "frozen"
    # With batchnorm="train", re-estimate BN statistics on this many training batches after the
    # phase (0 turns it off): short runs leave BN moving averages far from the data's.
    c.phase2.recalibration_batches = 50
    # Run the frozen part below the opened blocks once per image (once per variant with flip)
    # and train the opened blocks + head on the cached activations: "auto" does so when it
    # gives the same training (augmentation none or flip, part of the base frozen), "on"
    # requires it, "off" runs the whole base every step. Storage follows data.cache; several
    # workers each cache their own shard.
    c.phase2.cache_frozen = "auto"
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
    # The source task's training data: a spec as data.train takes ("" is refused by pretrain).
    c.pretrain.train = ""
    # The source task's test data, for the backbone's reported accuracy ("" for none).
    c.pretrain.test = ""
    # Optional comma-separated source classes (names or ids), as data.classes.
    c.pretrain.classes = config_dict.placeholder(str)
    # Epochs from random init; the whole network and BatchNorm train.
    c.pretrain.epochs = 5
    # Peak learning rate (warm-up, then cosine decay to zero); also the rate of
    # scratch_baseline, the from-scratch run fine-tuning is compared against.
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
    # TFLite weights: "float16" (half size), "dynamic_range" (int8 weights, quarter size) or
    # "int8" (full-integer: int8 weights and activations, calibrated on representative
    # training images; uint8 pixels in, float32 probabilities out).
    c.export.tflite_quantization = "float16"
    # int8 only: how many training images (a seeded sample) calibrate the activation ranges.
    c.export.representative_examples = 300
    # Also write an ONNX model (assets.extra/onnx/model.onnx, through Keras's own ONNX export),
    # checked with onnxruntime. Needs pip install 'sft_tf[onnx]'.
    c.export.onnx = False
    # The accuracy guard: every variant (TFLite, ONNX) is scored on the test split (validation
    # without one) before publishing; one that loses more accuracy than this versus the
    # SavedModel is not published and the export stops.
    c.export.max_accuracy_drop = 0.01
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
    # for bit; this makes that hold on GPUs too. A run with it ends with other weights than
    # one without (on CPU as well), so changing it on a resume is a config change. TF 2.21
    # logs one harmless "NodeDef mentions attribute use_unbounded_threadpool" line with it.
    c.runtime.deterministic = False
    return c


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
