"""TFDS tf_flowers on EfficientNetB0 with ImageNet weights: the full two-phase schedule.

TFDS and Keras download the data and weights on first use (online machines):
  sft-tf train --config=configs/flowers_efficientnetb0.py --workdir=runs/flowers
The export lands in saved_models/flowers_efficientnetb0/<version>/.
"""

from sft_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.name = "flowers_efficientnetb0"
    config.model.backbone = "EfficientNetB0"
    config.model.weights = "imagenet"
    config.model.image_size = 224
    config.data.train = "tfds:tf_flowers:train[:80%]"
    config.data.validation = "tfds:tf_flowers:train[80%:90%]"
    config.data.test = "tfds:tf_flowers:train[90%:]"
    config.data.augment = "flip,translate,zoom"
    config.phase1.epochs = 5
    config.phase1.learning_rate = 1e-3
    config.phase1.early_stopping_patience = 2
    config.phase2.epochs = 10
    config.phase2.learning_rate = 1e-4
    config.phase2.unfreeze_blocks = 3
    config.phase2.early_stopping_patience = 3
    return config
