"""Pretrained ResNet50, new head, then the whole network trained with SGD momentum at 1e-3.

A short head-only warm-up (phase 1) keeps the random head from wrecking the pretrained
features; phase 2 opens every block. Keras downloads the ImageNet weights on first use:
  sft-tf train --config=configs/resnet50_finetune_all.py --workdir=runs/finetune_all \
      --config.data.train=folder:/data/train --config.data.test=folder:/data/test
"""

from sft_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.name = "resnet50_finetune_all"
    config.model.backbone = "ResNet50"
    config.model.weights = "imagenet"
    config.model.image_size = 224
    config.phase1.epochs = 2
    config.phase1.learning_rate = 1e-3
    config.phase2.epochs = 10
    config.phase2.optimizer = "sgd"
    config.phase2.momentum = 0.9
    config.phase2.learning_rate = 1e-3
    config.phase2.unfreeze_blocks = -1
    return config
