"""Cutting the classifier where phase 2's opened blocks begin: the frozen part below, the
trainee above.

In phase 2 only the top blocks train. Everything below the first opened block is frozen and,
as the classifier calls it, deterministic: no trainable BatchNorm there, and with
phase2.batchnorm=frozen the base runs with training=False (no dropout either). So an image
gives the same activations at that boundary every epoch. `cut_classifier` makes two models
of the classifier's own layers: `lower` (raw pixels -> the tensors entering the first opened
block: one for a chain of blocks, two for NASNet, whose cells read the two previous ones) and
`trainee` (those tensors -> the opened blocks -> pooling -> dropout -> head). Training the
trainee trains the classifier: the weights are the same objects.
"""

from __future__ import annotations

import dataclasses

import keras

from sft_tf.model import backbones
from sft_tf.model.classifier import (
    DROPOUT_LAYER,
    HEAD_LAYER,
    POOL_LAYER,
    PREPROCESS_LAYER,
    get_base,
)


@dataclasses.dataclass
class Cut:
    """The classifier cut at the first opened block.

    Attributes:
      lower: uint8 images -> the boundary tensor(s), in inference mode.
      trainee: the boundary tensor(s) -> probabilities; what phase 2 fits.
      boundary: the first layer above the cut ("pool" when no block is open).
    """

    lower: keras.Model
    trainee: keras.Model
    boundary: str

    @property
    def inputs(self) -> int:
        """How many tensors cross the cut."""
        return len(self.trainee.inputs)


def boundary_index(base: keras.Model, backbone: str, opened: list[str]) -> int | None:
    """The index in `base.layers` of the first opened layer; len(base.layers) when nothing is
    open; None when the whole base is (there is no frozen part to cache)."""
    if "stem" in opened:
        return None
    if not opened:
        return len(base.layers)
    structure = backbones.block_structure(base, backbone)
    first = dict(structure.blocks)[opened[0]][0]
    return [layer.name for layer in base.layers].index(first)


def crossing_tensors(base: keras.Model, index: int) -> list:
    """The tensors made below layer `index` of `base` and read at or above it (or the base's
    output when `index` is past the last layer), in layer order."""
    if index >= len(base.layers):
        return list(base.outputs)
    position = {id(layer): i for i, layer in enumerate(base.layers)}
    found = {}
    for layer in base.layers[index:]:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                producer = position.get(id(tensor._keras_history.operation))
                if producer is not None and producer < index:
                    found[(producer, tensor._keras_history.tensor_index)] = tensor
    return [found[key] for key in sorted(found)]


def training_mode_below(base: keras.Model, index: int, batchnorm: str) -> list[str]:
    """Layers below the cut that would behave differently in training: trainable BatchNorm,
    and dropout-like layers, when the base runs in training mode (phase2.batchnorm=train). Any
    makes the cached activations differ from what training sees."""
    if batchnorm == "frozen":  # the classifier calls the base with training=False
        return []
    return [
        layer.name
        for layer in base.layers[:index]
        if (isinstance(layer, keras.layers.BatchNormalization) and layer.trainable)
        or isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianNoise))
    ]


def cut_classifier(model: keras.Model, index: int, batchnorm: str) -> Cut:
    """Cuts a classifier from `classifier.build_classifier` before base layer `index`.

    Fresh copies of the weightless preprocessing and pooling layers are used, so the
    classifier's own layers keep one inbound node each (others find them by name and output).
    """
    base = get_base(model)
    crossing = crossing_tensors(base, index)
    frozen = {"training": False} if batchnorm == "frozen" else {}

    preprocess = model.get_layer(PREPROCESS_LAYER)
    below = keras.Model(base.inputs, crossing[0] if len(crossing) == 1 else crossing)
    images = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype, name="images")
    fresh_preprocess = preprocess.__class__.from_config(preprocess.get_config())
    lower = keras.Model(
        images, below(fresh_preprocess(images), training=False), name=f"{model.name}_lower"
    )

    inputs = [
        keras.Input(t.shape[1:], dtype=t.dtype, name=f"boundary_{i}")
        for i, t in enumerate(crossing)
    ]
    x = inputs[0] if len(inputs) == 1 else inputs
    if index < len(base.layers):
        above = keras.Model(crossing[0] if len(crossing) == 1 else crossing, base.outputs[0])
        x = above(x, **frozen)
    pool = model.get_layer(POOL_LAYER)
    x = pool.__class__.from_config({**pool.get_config(), "name": "boundary_pool"})(x)
    for name in (DROPOUT_LAYER, HEAD_LAYER):
        x = model.get_layer(name)(x)
    boundary = base.layers[index].name if index < len(base.layers) else POOL_LAYER
    trainee = keras.Model(inputs if len(inputs) > 1 else inputs[0], x, name=f"{model.name}_top")
    return Cut(lower=lower, trainee=trainee, boundary=boundary)
