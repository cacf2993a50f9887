"""A keras.applications base built from its entry in `sft_tf.model.catalog`, and where its
blocks are.

Blocks are found in two steps. The layer graph gives the *cut points*: places in the
topological layer order where at most `max_crossing` tensors flow from the layers before to
the layers after (one for a plain chain of blocks; two for NASNet, whose cells read the two
previous cells). Cutting only there guarantees that no residual connection is split. Layer
names then group the pieces between cut points into the blocks the architecture's authors
named (`block_16` in MobileNetV2, `conv5_block3` in ResNet50, `mixed10` in InceptionV3).
Pieces without a block name (auto-named activations, Inception's branch convolutions,
DenseNet transitions) join the next named block; the ones before the first block form the
stem and the ones after the last block form the top.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import keras

from sft_tf.model import catalog


@dataclasses.dataclass(frozen=True)
class BlockStructure:
    """A base split into stem, blocks (bottom to top) and top, by layer name."""

    stem: list[str]
    blocks: list[tuple[str, list[str]]]
    top: list[str]

    @property
    def block_names(self) -> list[str]:
        return [name for name, _ in self.blocks]


def build_base(name: str, image_size: int, weights: str | None = None, **options) -> keras.Model:
    """Builds the headless base (`include_top=False`) for square `image_size` inputs.

    Args:
      name: a backbone name from `catalog.names()`.
      image_size: input height and width.
      weights: "imagenet" (downloaded by Keras) or None for random initialisation.
      **options: constructor arguments listed in the entry's `options`.

    Raises:
      UserError: unknown name, too small an input, or an option the backbone lacks.
    """
    spec = catalog.check_model(name, image_size, options)
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
    spec = catalog.get(name)
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
    spec = catalog.get(name)
    return len(block_structure(build_base(name, spec.min_size, None), name).blocks)
