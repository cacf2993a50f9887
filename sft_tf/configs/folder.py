"""Your own images: EfficientNetB0 with ImageNet weights on a folder of class sub-folders.

Needs the network once (Keras downloads and caches the ImageNet weights):
  sft-tf train --config=configs/folder.py --workdir=runs/my_images \
      --config.data.train=folder:/data/train --config.data.test=folder:/data/test \
      --config.name=my_images
The export lands in saved_models/my_images/<version>/.
"""

from sft_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.name = "images_efficientnetb0"
    config.model.backbone = "EfficientNetB0"
    config.model.weights = "imagenet"
    config.model.image_size = 224
    config.data.global_batch_size = 32
    config.data.augment = "flip,translate,zoom"
    config.phase1.epochs = 5
    config.phase1.learning_rate = 1e-3
    config.phase2.epochs = 5
    config.phase2.learning_rate = 1e-4
    config.phase2.warmup_epochs = 1.0
    # EfficientNetB0 has 16 blocks (block1a ... block7a); the top 3 and the top conv train.
    config.phase2.unfreeze_blocks = 3
    return config
