"""The keras.applications backbones sft_tf can fine-tune, and where their blocks are.

One `Backbone` entry per constructor: its family's `preprocess_input` (built into the
classifier as a layer), the smallest input it accepts with `include_top=False`, the
constructor arguments it takes, and a rule that names the block each layer belongs to.

Blocks are found in two steps. The layer graph gives the *cut points*: places in the
topological layer order where at most `max_crossing` tensors flow from the layers before to
the layers after (one for a plain chain of blocks; two for NASNet, whose cells read the two
previous cells). Cutting only there guarantees that no residual connection is split. Layer
names then group the pieces between cut points into the blocks the architecture's authors
named (`block_16` in MobileNetV2, `conv5_block3` in ResNet50, `mixed10` in InceptionV3).
Pieces without a block name (auto-named activations, Inception's branch convolutions,
DenseNet transitions) join the next named block; the ones before the first block form the
stem and the ones after the last block form the top.

Keras 3 ships no RegNet (and no ResNetRS) in `keras.applications`, so neither is listed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Callable

import keras

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

    @property
    def constructor(self) -> Callable[..., keras.Model]:
        return getattr(keras.applications, self.name)

    @property
    def preprocess_input(self) -> Callable:
        return getattr(keras.applications, self.family).preprocess_input


@dataclasses.dataclass(frozen=True)
class BlockStructure:
    """A base split into stem, blocks (bottom to top) and top, by layer name."""

    stem: list[str]
    blocks: list[tuple[str, list[str]]]
    top: list[str]

    @property
    def block_names(self) -> list[str]:
        return [name for name, _ in self.blocks]


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


def build_base(name: str, image_size: int, weights: str | None = None, **options) -> keras.Model:
    """Builds the headless base (`include_top=False`) for square `image_size` inputs.

    Args:
      name: a backbone name from `names()`.
      image_size: input height and width.
      weights: "imagenet" (downloaded by Keras) or None for random initialisation.
      **options: constructor arguments listed in the entry's `options`.

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
    return spec.constructor(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3), **options
    )


def _inputs(base: keras.Model) -> list[list[tuple[int, int]]]:
    """For each layer of `base.layers`, the tensors it reads as (producer index, output index)."""
    index = {id(layer): i for i, layer in enumerate(base.layers)}
    inputs = []
    for layer in base.layers:
        tensors = set()
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                history = tensor._keras_history
                if id(history.operation) in index:
                    tensors.add((index[id(history.operation)], history.tensor_index))
        inputs.append(sorted(tensors))
    return inputs


def crossing_counts(base: keras.Model) -> list[int]:
    """`counts[b]`: distinct tensors made by layers `< b` and read by layers `>= b`."""
    inputs = _inputs(base)
    last_read: dict[tuple[int, int], int] = {}
    for consumer, parents in enumerate(inputs):
        for tensor in parents:
            last_read[tensor] = max(last_read.get(tensor, -1), consumer)
    counts = [0] * (len(base.layers) + 1)
    for (producer, _), reader in last_read.items():
        for b in range(producer + 1, reader + 1):
            counts[b] += 1
    return counts


def block_structure(base: keras.Model, name: str) -> BlockStructure:
    """Splits a base built by `build_base(name, ...)` into stem, whole blocks and top.

    Raises:
      ValueError: no layer name matches the backbone's block pattern (an unexpected base).
    """
    spec = get(name)
    layers = [layer.name for layer in base.layers]
    counts = crossing_counts(base)
    cuts = [b for b in range(1, len(layers)) if counts[b] <= spec.max_crossing] + [len(layers)]

    pattern = re.compile(spec.block_pattern)
    pieces: list[tuple[str | None, list[str]]] = []
    start = 0
    for cut in cuts:
        piece = layers[start:cut]
        labels = [m.group(1) for m in map(pattern.search, piece) if m]
        pieces.append((labels[-1] if labels else None, piece))
        start = cut

    named = [i for i, (label, _) in enumerate(pieces) if label is not None]
    if not named:
        raise ValueError(f"no layer of {base.name} matches {spec.block_pattern!r}")
    stem = [layer for _, piece in pieces[: named[0]] for layer in piece]
    top = [layer for _, piece in pieces[named[-1] + 1 :] for layer in piece]
    blocks: list[tuple[str, list[str]]] = []
    pending: list[str] = []  # unnamed pieces waiting for the next named one
    previous = None
    for label, piece in pieces[named[0] : named[-1] + 1]:
        if label is None:
            pending += piece
        elif label == previous:
            blocks[-1][1].extend(pending + piece)
            pending = []
        else:
            blocks.append((spec.block_label.format(label), pending + piece))
            pending = []
            previous = label
    return BlockStructure(stem=stem, blocks=blocks, top=top)


@functools.cache
def block_count(name: str) -> int:
    """How many blocks `unfreeze_top_blocks` can open in this backbone (any input size)."""
    spec = get(name)
    return len(block_structure(build_base(name, spec.min_size, None), name).blocks)
