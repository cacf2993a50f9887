"""ResNet50 with ImageNet weights as a fixed feature extractor: only a new softmax head trains.

Base frozen, GlobalAveragePooling + softmax Dense, Adam 1e-4, 10 epochs, no phase 2. Keras
downloads the ImageNet weights on first use:
  sft-tf train --config=configs/resnet50_frozen_head.py --workdir=runs/frozen_head \
      --config.data.train=folder:/data/train --config.data.test=folder:/data/test
"""

from sft_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.name = "resnet50_frozen_head"
    config.model.backbone = "ResNet50"
    config.model.weights = "imagenet"
    config.model.image_size = 224
    config.model.pooling = "avg"
    config.phase1.epochs = 10
    config.phase1.optimizer = "adam"
    config.phase1.learning_rate = 1e-4
    config.phase2.epochs = 0  # the base never trains
    config.phase2.warmup_epochs = 0.0
    return config
