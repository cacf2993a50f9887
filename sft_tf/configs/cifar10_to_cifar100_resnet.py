"""Source -> target: ResNet50 trained from scratch on CIFAR-10, fine-tuned on CIFAR-100.

The classic transfer recipe with SGD (momentum 0.9, weight decay 5e-4): learning rate 0.1 for
the source training, 0.01 for fine-tuning with a new 100-way head. TFDS downloads both
datasets on first use (online machines):
  sft-tf pretrain --config=configs/cifar10_to_cifar100_resnet.py --workdir=runs/cifar10
  sft-tf train --config=configs/cifar10_to_cifar100_resnet.py --workdir=runs/cifar100 \
      --config.model.weights=runs/cifar10/backbone.weights.h5
"""

from sft_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.name = "cifar100_resnet50"
    config.model.backbone = "ResNet50"
    config.model.weights = ""  # the pretrain step makes the base; train takes it by flag
    config.model.image_size = 32
    config.data.train = "tfds:cifar100:train"
    config.data.validation = "split:0.1"
    config.data.test = "tfds:cifar100:test"
    config.data.global_batch_size = 128
    config.data.augment = "flip,translate"
    config.pretrain.train = "tfds:cifar10:train"
    config.pretrain.test = "tfds:cifar10:test"
    config.pretrain.epochs = 30
    config.pretrain.optimizer = "sgd"
    config.pretrain.learning_rate = 0.1
    config.pretrain.weight_decay = 5e-4
    for phase in (config.phase1, config.phase2):
        phase.optimizer = "sgd"
        phase.momentum = 0.9
        phase.weight_decay = 5e-4
        phase.learning_rate = 0.01
    config.phase1.epochs = 3
    config.phase2.epochs = 30
    config.phase2.warmup_epochs = 1.0
    config.phase2.unfreeze_blocks = -1  # the whole network, as in the classic recipe
    config.phase2.batchnorm = "train"
    return config
