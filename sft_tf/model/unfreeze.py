"""Opening the base's top blocks for phase 2, and re-estimating BatchNorm statistics.

Whole blocks only, as the architecture's authors named them (`backbones.block_structure`),
never half a residual block; BatchNorm stays in inference mode unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import tensorflow as tf
from keras import ops

from sft_tf.model import backbones
from sft_tf.model.classifier import PREPROCESS_LAYER, get_base


def _layers_recursive(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    yield layer
    for sub in getattr(layer, "_layers", None) or []:
        yield from _layers_recursive(sub)


def batchnorm_layers(model: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer inside `model`, nested ones included."""
    return [
        layer
        for layer in _layers_recursive(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def opened_blocks(structure: backbones.BlockStructure, k: int) -> list[str]:
    """The names of the blocks `unfreeze_top_blocks(..., k)` opens, bottom to top ("stem"
    first when that is the whole base)."""
    n = len(structure.blocks)
    if k < 0 or k >= n:
        return ["stem", *structure.block_names]
    return structure.block_names[n - k :] if k else []


def unfreeze_top_blocks(
    base: keras.Model, backbone: str, k: int, train_batchnorm: bool = False
) -> list[str]:
    """Makes the top `k` whole blocks of the base trainable (plus the layers after them).

    Blocks come from `backbones.block_structure`, so a residual block is opened or left
    frozen as a unit. Recompile the model afterwards: Keras reads `trainable` at compile time.

    Args:
      base: the keras.applications base.
      backbone: its class name (selects the block naming rules).
      k: number of top blocks; 0 opens nothing, -1 (or >= the block count) the whole base.
      train_batchnorm: if False, BatchNorm layers stay frozen even inside opened blocks.

    Returns:
      Names of the opened blocks, bottom to top ("stem" when the whole base is open).
    """
    structure = backbones.block_structure(base, backbone)
    names = opened_blocks(structure, k)
    if names[:1] == ["stem"]:
        opened = {layer.name for layer in base.layers}
    else:
        opened = set(structure.top) if k else set()
        for name, layer_names in structure.blocks:
            if name in names:
                opened.update(layer_names)
    # The base must be trainable for any of its layers to be; then close all but the chosen.
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name in opened
    if not train_batchnorm:
        for layer in batchnorm_layers(base):
            layer.trainable = False
    return names


def recalibrate_batchnorm(model: keras.Model, dataset: tf.data.Dataset, batches: int) -> int:
    """Re-estimates every BatchNorm layer's moving statistics on `batches` batches.

    BatchNorm's moving averages (momentum 0.99-0.999 in keras.applications) lag far behind the
    weights after a short training run; a base saved that way scores near chance in inference
    mode. This replaces them with the cumulative average over the given batches, run in
    training mode with the weights untouched.

    Args:
      model: a classifier from `build_classifier`.
      dataset: batches of (images, labels[, weights]); shuffled, without augmentation.
      batches: how many batches to average over.

    Returns:
      The number of batches used.
    """
    base = get_base(model)
    preprocess = model.get_layer(PREPROCESS_LAYER)
    layers = batchnorm_layers(base)
    if not layers or batches <= 0:
        return 0
    saved = [(layer.trainable, layer.momentum) for layer in layers]
    for layer in layers:
        # Keras runs BN with trainable=False in inference mode; it must see batch statistics here.
        layer.trainable = True
        layer.moving_mean.assign(ops.zeros_like(layer.moving_mean))
        layer.moving_variance.assign(ops.ones_like(layer.moving_variance))
    used = 0
    try:
        for images, *_ in dataset.take(batches):
            used += 1
            for layer in layers:
                # momentum (t-1)/t turns the moving average into the plain mean of t batches.
                layer.momentum = (used - 1) / used
            base(preprocess(images), training=True)
    finally:
        for layer, (trainable, momentum) in zip(layers, saved):
            layer.trainable = trainable
            layer.momentum = momentum
    return used
