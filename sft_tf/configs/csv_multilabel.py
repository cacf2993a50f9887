"""Multi-label images listed in a CSV: EfficientNetB0 with ImageNet weights, one sigmoid per label.

labels.csv has a header row; image paths are relative to the CSV's folder; an image's labels are
joined by | and the split column says which split a row belongs to:
  image,label,split
  photos/0001.jpg,sky|tree,train
  photos/0002.jpg,car,validation

Needs the network once (Keras downloads and caches the ImageNet weights):
  sft-tf train --config=configs/csv_multilabel.py --workdir=runs/tags \
      --config.data.train=csv:/data/labels.csv:train \
      --config.data.validation=csv:/data/labels.csv:validation \
      --config.data.test=csv:/data/labels.csv:test --config.name=tags
Each label's threshold is tuned on the validation rows; the export in saved_models/tags/<version>/
returns probabilities and predicted (0/1 per label) besides the top-k.
"""

from sft_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.name = "tags_efficientnetb0"
    config.model.backbone = "EfficientNetB0"
    config.model.weights = "imagenet"
    config.model.image_size = 224
    config.data.multi_label = True
    config.data.train = "csv:labels.csv:train"
    config.data.validation = "csv:labels.csv:validation"
    config.data.test = "csv:labels.csv:test"
    config.data.global_batch_size = 32
    # Flips and small shifts keep every label of an image; crops could cut a tagged object out.
    config.data.augment = "flip,translate"
    # Rare labels' positives weigh negatives / positives of that label.
    config.data.class_weighting = "balanced"
    config.phase1.epochs = 5
    config.phase1.learning_rate = 1e-3
    config.phase2.epochs = 5
    config.phase2.learning_rate = 1e-4
    config.phase2.warmup_epochs = 1.0
    config.phase2.unfreeze_blocks = 3
    return config
