"""The classifier: raw pixels -> the backbone's own preprocessing -> base -> pooling -> head.

Also what the two-phase schedule does to it: freeze the base, open its top blocks (whole blocks,
BatchNorm policy applied), and re-estimate BatchNorm statistics after BN was trained.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from sft_tf.errors import UserError
from sft_tf.model import backbones, catalog
from sft_tf.model.weights import load_backbone_weights

# === Layer names: the head cache and the exports find the model's parts by these ===
PREPROCESS_LAYER = "preprocess"
POOL_LAYER = "pool"
DROPOUT_LAYER = "dropout"
HEAD_LAYER = "probabilities"


@keras.saving.register_keras_serializable(package="sft_tf")
class Preprocess(keras.layers.Layer):
    """The backbone family's own `preprocess_input`, as a layer of the model.

    Keeping preprocessing inside the model means the export takes raw 0..255 pixels and there
    is no second copy of the normalisation constants to drift from the first.
    """

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self._preprocess_input = catalog.get(backbone).preprocess_input

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
    multi_label: bool = False,
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
      multi_label: one independent sigmoid per label instead of a softmax over the classes.

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
    x = pool(name=POOL_LAYER)(x)
    x = keras.layers.Dropout(dropout, name=DROPOUT_LAYER)(x)
    # float32 output even under mixed precision: softmax in half precision loses the tails.
    outputs = keras.layers.Dense(
        num_classes,
        activation="sigmoid" if multi_label else "softmax",
        dtype="float32",
        name=HEAD_LAYER,
        kernel_initializer="zeros" if head_init == "zeros" else "glorot_uniform",
    )(x)
    return keras.Model(inputs, outputs, name=f"sft_tf_{backbone}")


def get_base(model: keras.Model) -> keras.Model:
    """The keras.applications base inside a classifier from `build_classifier`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"{model.name} has no nested base model")


def count_params(weights) -> int:
    """Number of scalars in a list of variables."""
    return int(sum(np.prod(w.shape) for w in weights))


def describe_trainable(model: keras.Model) -> str:
    """One line: trainable and total parameter counts."""
    trainable = count_params(model.trainable_weights)
    total = count_params(model.weights)
    return f"{trainable:,} of {total:,} parameters trainable"
