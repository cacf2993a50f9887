"""The smallest real run: MobileNetV2 (alpha 0.35) at 32x32, a few steps; tests use it.

  sft-tf train --config=configs/tiny.py --workdir=runs/tiny \
      --config.data.train=folder:/path/to/train --config.data.test=folder:/path/to/test
"""

from sft_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.name = "tiny"
    config.model.backbone = "MobileNetV2"
    config.model.alpha = 0.35
    config.model.image_size = 32
    config.model.weights = ""
    config.data.global_batch_size = 8
    config.data.augment = ""
    config.phase1.epochs = 1
    config.phase1.learning_rate = 1e-3
    config.phase2.epochs = 1
    config.phase2.learning_rate = 1e-4
    config.phase2.warmup_epochs = 0.0
    config.phase2.unfreeze_blocks = 2
    config.pretrain.epochs = 1
    config.pretrain.recalibration_batches = 4
    return config
