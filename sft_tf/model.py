"""The classifier: raw pixels -> the backbone's own preprocessing -> base -> pooling -> head.

Also what the two-phase schedule does to it: freeze the base, open its top blocks (whole blocks,
BatchNorm policy applied), and re-estimate BatchNorm statistics after BN was trained.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from sft_tf import backbones
from sft_tf.errors import UserError

PREPROCESS_LAYER = "preprocess"


@keras.saving.register_keras_serializable(package="sft_tf")
class Preprocess(keras.layers.Layer):
    """The backbone family's own `preprocess_input`, as a layer of the model.

    Keeping preprocessing inside the model means the export takes raw 0..255 pixels and there
    is no second copy of the normalisation constants to drift from the first.
    """

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self._preprocess_input = backbones.get(backbone).preprocess_input

    def call(self, images):
        return self._preprocess_input(ops.cast(images, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="sft_tf")
class Temperature(keras.layers.Layer):
    """Temperature scaling of a classifier's probabilities: softmax(log p / T).

    The classifier ends in a softmax, so log p are its logits up to a per-example constant,
    which the softmax cancels. Always float32, like the head's last layer.
    """

    def __init__(self, temperature: float, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.temperature = float(temperature)

    def call(self, probabilities):
        logits = ops.log(ops.maximum(ops.cast(probabilities, "float32"), 1e-30))
        return ops.softmax(logits / self.temperature, axis=-1)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def with_temperature(model: keras.Model, temperature: float | None) -> keras.Model:
    """`model` followed by temperature scaling (the model itself when temperature is None).

    The new model shares `model`'s layers and weights; nothing is copied.
    """
    if temperature is None:
        return model
    outputs = Temperature(temperature, name="temperature")(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


def _backbone_options(alpha: float | None) -> dict:
    return {} if alpha is None else {"alpha": alpha}


def build_classifier(
    backbone: str,
    num_classes: int,
    image_size: int,
    weights: str = "",
    pooling: str = "avg",
    dropout: float = 0.2,
    batchnorm: str = "frozen",
    alpha: float | None = None,
    head_init: str = "default",
) -> keras.Model:
    """Builds the fine-tuning model with a frozen base.

    Args:
      backbone: a keras.applications class name.
      num_classes: size of the new head.
      image_size: square input size.
      weights: "imagenet", "" (random init) or a weights file for the base.
      pooling: "avg" or "max" over the base's feature map.
      dropout: rate before the head.
      batchnorm: "frozen" calls the base with training=False, so its BatchNorm layers stay in
        inference mode whatever is unfrozen later; "train" lets BN layers that are trainable
        use batch statistics (Keras runs BN with trainable=False in inference mode anyway).
      alpha: width multiplier for the MobileNet families.
      head_init: "default" (Glorot) or "zeros" (every class starts at 1/C).

    Returns:
      A keras.Model from uint8 [B, S, S, 3] to float32 probabilities [B, num_classes].

    Raises:
      UserError: the weights cannot be fetched or do not fit the backbone.
    """
    options = _backbone_options(alpha)
    if weights == "imagenet":
        try:
            base = backbones.build_base(backbone, image_size, weights="imagenet", **options)
        except Exception as e:
            raise UserError(
                f"config.model.weights='imagenet': could not load ImageNet weights for {backbone} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Offline? Use "
                "--config.model.weights='' (random init) or a file from `sft-tf pretrain`"
            ) from e
    else:
        base = backbones.build_base(backbone, image_size, weights=None, **options)
        if weights:
            load_backbone_weights(base, weights, backbone, options)
    base.trainable = False

    inputs = keras.Input((image_size, image_size, 3), dtype="uint8", name="images")
    x = Preprocess(backbone, name=PREPROCESS_LAYER)(inputs)
    # training=False pins BatchNorm to its moving statistics even after the base is unfrozen.
    x = base(x, training=False) if batchnorm == "frozen" else base(x)
    pool = (
        keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    )
    x = pool(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 output even under mixed precision: softmax in half precision loses the tails.
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        dtype="float32",
        name="probabilities",
        kernel_initializer="zeros" if head_init == "zeros" else "glorot_uniform",
    )(x)
    return keras.Model(inputs, outputs, name=f"sft_tf_{backbone}")


def get_base(model: keras.Model) -> keras.Model:
    """The keras.applications base inside a classifier from `build_classifier`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"{model.name} has no nested base model")


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


def count_params(weights) -> int:
    """Number of scalars in a list of variables."""
    return int(sum(np.prod(w.shape) for w in weights))


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
    n = len(structure.blocks)
    if k < 0 or k >= n:
        chosen = list(structure.blocks)
        opened = {layer.name for layer in base.layers}
        names = ["stem"] + [name for name, _ in chosen]
    else:
        chosen = list(structure.blocks[n - k :]) if k else []
        opened = set(structure.top) if k else set()
        for _, layer_names in chosen:
            opened.update(layer_names)
        names = [name for name, _ in chosen]
    # The base must be trainable for any of its layers to be; then close all but the chosen.
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name in opened
    if not train_batchnorm:
        for layer in batchnorm_layers(base):
            layer.trainable = False
    return names


def describe_trainable(model: keras.Model) -> str:
    """One line: trainable and total parameter counts."""
    trainable = count_params(model.trainable_weights)
    total = count_params(model.weights)
    return f"{trainable:,} of {total:,} parameters trainable"


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


def sidecar_path(weights_path: str | Path) -> Path:
    """The JSON written beside a backbone weights file: what it is and where it came from."""
    path = Path(weights_path)
    return path.with_name(path.name.removesuffix(".weights.h5") + ".json")


def save_backbone_weights(base: keras.Model, path: str | Path, info: dict) -> None:
    """Saves the base's weights and a JSON sidecar (`info` + backbone identity)."""
    path = Path(path)
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    base.save_weights(tmp)
    tmp.replace(path)
    sidecar = sidecar_path(path)
    sidecar.with_suffix(".tmp").write_text(json.dumps(info, indent=2) + "\n")
    sidecar.with_suffix(".tmp").replace(sidecar)


def check_weights_sidecar(path: str | Path, backbone: str, options: dict) -> None:
    """Cheap check before any model is built: the sidecar JSON names the same backbone.

    Raises:
      UserError: the file was made for another backbone or width.
    """
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        info = json.loads(sidecar.read_text())
        made_for = (info.get("backbone"), info.get("options", {}))
        if made_for != (backbone, options):
            raise UserError(
                f"config.model.weights={path} was made for {made_for[0]} {made_for[1]}, "
                f"not {backbone} {options}; set config.model.backbone/alpha to match or "
                "pretrain a new backbone"
            )


def load_backbone_weights(base: keras.Model, path: str, backbone: str, options: dict) -> None:
    """Loads a weights file into the base, refusing one made for another backbone.

    Raises:
      UserError: the sidecar names a different backbone or options, or Keras cannot map the
        file's variables onto this base.
    """
    check_weights_sidecar(path, backbone, options)
    try:
        with warnings.catch_warnings():
            # Keras only warns when some variables could not be matched; that is a wrong file.
            warnings.simplefilter("error")
            base.load_weights(path)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"config.model.weights={path} does not fit {backbone} {options}: {first}; give the "
            "backbone.weights.h5 that `sft-tf pretrain` wrote for this backbone, or 'imagenet'"
        ) from e
