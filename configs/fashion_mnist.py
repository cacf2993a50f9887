"""Offline demo: pretrain on 5 Fashion-MNIST classes, fine-tune on the other 5 with few labels.

All of it, with the from-scratch baseline (what `make demo` runs):
  sft-tf demo --config=configs/fashion_mnist.py --workdir=runs/demo
Step by step:
  sft-tf pretrain --config=configs/fashion_mnist.py --workdir=runs/demo/source
  sft-tf train --config=configs/fashion_mnist.py --workdir=runs/demo/finetune \
      --config.model.weights=runs/demo/source/backbone.weights.h5
"""

from sft_tf import config_lib

SOURCE_CLASSES = "T-shirt/top,Trouser,Pullover,Dress,Coat"
TARGET_CLASSES = "Sandal,Shirt,Sneaker,Bag,Ankle boot"


def get_config():
    config = config_lib.base_config()
    config.name = "fashion_mnist"
    config.model.backbone = "MobileNetV2"
    config.model.alpha = 0.35
    config.model.image_size = 32
    config.model.weights = ""
    config.model.dropout = 0.2
    config.data.train = "fashion_mnist:train"
    config.data.test = "fashion_mnist:test"
    config.data.classes = TARGET_CLASSES
    config.data.examples_per_class = 20
    config.data.global_batch_size = 32
    config.data.augment = "flip"
    config.phase1.epochs = 20
    config.phase1.learning_rate = 3e-3
    config.phase2.epochs = 20
    config.phase2.learning_rate = 3e-4
    config.phase2.warmup_epochs = 2.0
    config.phase2.unfreeze_blocks = 4
    config.pretrain.train = "fashion_mnist:train"
    config.pretrain.test = "fashion_mnist:test"
    config.pretrain.classes = SOURCE_CLASSES
    config.pretrain.epochs = 3
    config.pretrain.learning_rate = 2e-3
    return config
