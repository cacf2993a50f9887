"""The keras.applications backbones sft_tf can fine-tune: one `Backbone` entry per constructor,
with its family's `preprocess_input`, the smallest input it accepts with `include_top=False`,
the constructor arguments a config may set, and the layer-name rule that names its blocks
(`sft_tf.model.backbones` finds the blocks with it).

Importing this table loads no TensorFlow: the CLI checks `config.model` against it before
TensorFlow's import (a mistyped backbone answers at once). Keras 3 ships no RegNet (and no
ResNetRS) in `keras.applications`, so neither is listed.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

from sft_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Backbone:
    """How to build one keras.applications base and split it into blocks.

    Attributes:
      name: the keras.applications class name, e.g. "EfficientNetB0".
      family: the keras.applications module holding its `preprocess_input`.
      min_size: smallest square input accepted with include_top=False.
      block_pattern: regex searched in each layer name; group 1 is the block name.
      options: constructor keyword arguments a config may set (e.g. "alpha").
      max_crossing: tensors allowed to cross a block boundary.
      block_label: format for block names from the pattern's group 1.
    """

    name: str
    family: str
    min_size: int
    block_pattern: str
    options: tuple[str, ...] = ()
    max_crossing: int = 1
    block_label: str = "{}"

    # Keras is imported when a model is built, not with the table.
    @property
    def constructor(self) -> Callable:
        import keras

        return getattr(keras.applications, self.name)

    @property
    def preprocess_input(self) -> Callable:
        import keras

        return getattr(keras.applications, self.family).preprocess_input


_RESNET = r"^(conv\d_block\d+)_"
_EFFICIENTNET = r"^(block\d+[a-z])_"
# NASNet cells end their layer names with the cell id: "_stem_1", "_reduce_4", "_3". Only
# names of cell layers count; auto names such as "activation_12" end in digits too.
_NASNET = r"^(?:adjust|normal|reduction|separable_conv)\w*?_(stem_\d+|reduce_\d+|\d+)$"


def _entries() -> list[Backbone]:
    entries = [
        Backbone(
            "MobileNet",
            "mobilenet",
            32,
            r"^conv_(?:dw|pw|pad)_(\d+)",
            ("alpha",),
            block_label="block_{}",
        ),
        Backbone("MobileNetV2", "mobilenet_v2", 32, r"^(expanded_conv|block_\d+)_", ("alpha",)),
        Backbone("Xception", "xception", 71, r"^(block\d+)_"),
        Backbone("InceptionV3", "inception_v3", 75, r"^(mixed\d+)$"),
        Backbone(
            "InceptionResNetV2",
            "inception_resnet_v2",
            75,
            r"^(mixed_\d[a-z]|block(?:35|17|8)_\d+)(?:_mixed|_conv|_ac)?$",
        ),
        Backbone("VGG16", "vgg16", 32, r"^(block\d)_"),
        Backbone("VGG19", "vgg19", 32, r"^(block\d)_"),
    ]
    entries += [
        Backbone(
            f"MobileNetV3{size}",
            "mobilenet_v3",
            32,
            r"^(expanded_conv(?:_\d+)?)_",
            ("alpha", "minimalistic"),
        )
        for size in ("Small", "Large")
    ]
    entries += [Backbone(f"EfficientNetB{i}", "efficientnet", 32, _EFFICIENTNET) for i in range(8)]
    entries += [
        Backbone(f"EfficientNetV2{v}", "efficientnet_v2", 32, _EFFICIENTNET)
        for v in ("B0", "B1", "B2", "B3", "S", "M", "L")
    ]
    entries += [Backbone(f"ResNet{d}", "resnet", 32, _RESNET) for d in (50, 101, 152)]
    entries += [Backbone(f"ResNet{d}V2", "resnet_v2", 32, _RESNET) for d in (50, 101, 152)]
    entries += [Backbone(f"DenseNet{d}", "densenet", 32, _RESNET) for d in (121, 169, 201)]
    entries += [
        Backbone(f"NASNet{size}", "nasnet", 32, _NASNET, max_crossing=2, block_label="cell_{}")
        for size in ("Mobile", "Large")
    ]
    entries += [
        Backbone(f"ConvNeXt{size}", "convnext", 32, r"_(stage_\d+_block_\d+)_")
        for size in ("Tiny", "Small", "Base", "Large", "XLarge")
    ]
    return entries


BACKBONES: dict[str, Backbone] = {b.name: b for b in _entries()}

# Every backbone above has at least this many blocks: the smallest constructor of each family
# is walked in tests/model/test_backbones.py, and the larger ones only add blocks. A config
# opening no more than this needs no backbone built to check it.
FEWEST_BLOCKS = 4


def names() -> list[str]:
    """Every supported backbone name, sorted."""
    return sorted(BACKBONES)


def get(name: str) -> Backbone:
    """The table entry for `name`.

    Raises:
      UserError: `name` is not in the table; the message suggests the closest name.
    """
    if name in BACKBONES:
        return BACKBONES[name]
    close = difflib.get_close_matches(name, names(), n=1, cutoff=0.5)
    if not close:
        close = [n for n in names() if n.lower() == name.lower()]
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(
        f"config.model.backbone={name!r} is not a keras.applications backbone; {hint}"
        f"choose one of: {', '.join(names())}"
    )


def check_model(name: str, image_size: int, options: dict) -> Backbone:
    """The entry for `name`, checked against the input size and constructor arguments.

    Raises:
      UserError: unknown name, too small an input, or an option the backbone lacks.
    """
    spec = get(name)
    if image_size < spec.min_size:
        raise UserError(
            f"config.model.image_size={image_size} is below {name}'s minimum "
            f"{spec.min_size}; use >= {spec.min_size}"
        )
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise UserError(f"config.model.{unknown[0]} is not an argument of {name}; unset it")
    return spec
