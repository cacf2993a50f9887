"""The fine-tuning recipe: optimizers, per-block learning rates, L2-SP, head init.

Everything here reuses Keras: the optimizers are Keras's own, with one override that scales
the learning rate per variable (Keras has no per-layer rates); L2-SP is a Keras regularizer
set on the opened variables, so `model.losses` carries it like any weight decay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
from keras import ops

OPTIMIZERS = ("adam", "adamw", "sgd")


class _PerVariableRate:
    """Mixin for a Keras optimizer: multiplies the learning rate by a per-variable factor."""

    def set_rate_scales(self, scales: Iterable[tuple[keras.Variable, float]]) -> None:
        # Keys as the TF optimizer computes them, so mirrored components find their variable.
        self._rate_scales = {self._var_key(v): float(s) for v, s in scales}

    def update_step(self, gradient, variable, learning_rate):
        scale = getattr(self, "_rate_scales", {}).get(self._var_key(variable), 1.0)
        if scale != 1.0:
            learning_rate = ops.multiply(learning_rate, scale)
        return super().update_step(gradient, variable, learning_rate)


_CLASSES = {
    "adam": type("Adam", (_PerVariableRate, keras.optimizers.Adam), {}),
    "adamw": type("AdamW", (_PerVariableRate, keras.optimizers.AdamW), {}),
    "sgd": type("SGD", (_PerVariableRate, keras.optimizers.SGD), {}),
}


def build_optimizer(
    name: str,
    learning_rate,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    clipnorm: float | None = None,
) -> keras.optimizers.Optimizer:
    """A Keras optimizer that also accepts per-variable learning-rate scales.

    Args:
      name: adam, adamw (decoupled weight decay) or sgd (with momentum, optionally Nesterov).
      learning_rate: a float or a Keras schedule.
      weight_decay: decoupled decay for adamw and sgd; Adam has none (use adamw).
      momentum, nesterov: for sgd.
      clipnorm: clip each gradient to this norm (None: no clipping).
    """
    common = {"learning_rate": learning_rate, "clipnorm": clipnorm or None}
    if name == "adam":
        return _CLASSES["adam"](**common)
    if name == "adamw":
        return _CLASSES["adamw"](weight_decay=weight_decay, **common)
    if name == "sgd":
        return _CLASSES["sgd"](
            momentum=momentum, nesterov=nesterov, weight_decay=weight_decay or None, **common
        )
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def block_rate_scales(
    base: keras.Model, blocks: Sequence[tuple[str, Sequence[str]]], decay: float
) -> list[tuple[keras.Variable, float]]:
    """Learning-rate factors for discriminative fine-tuning.

    Args:
      base: the backbone.
      blocks: the opened blocks, bottom to top, as (name, layer names).
      decay: the top block gets 1, the one below `decay`, then `decay**2`, ...; layers above
        the top block and the head keep 1.

    Returns:
      (variable, factor) pairs for the variables of the opened blocks.
    """
    scales = []
    for depth, (_, layer_names) in enumerate(reversed(blocks)):
        for name in layer_names:
            for variable in base.get_layer(name).trainable_weights:
                scales.append((variable, decay**depth))
    return scales


@keras.saving.register_keras_serializable(package="sft_tf")
class TowardStart(keras.regularizers.Regularizer):
    """L2-SP: strength * ||w - w_start||^2, pulling a weight toward its pretrained value."""

    def __init__(self, start, strength: float):
        self.start = ops.convert_to_tensor(start)
        self.strength = strength

    def __call__(self, x):
        return self.strength * ops.sum(ops.square(x - self.start))

    def get_config(self):
        return {"strength": self.strength}


def apply_l2sp(variables: Iterable[keras.Variable], strength: float) -> int:
    """Sets the L2-SP penalty on `variables` (their current values are the start point).

    Keras adds a variable's regularizer to the loss while the variable is trainable, so only
    the opened layers are pulled back. strength 0 removes the penalty.

    Returns:
      The number of variables given a penalty.
    """
    count = 0
    for variable in variables:
        # BatchNorm scale and shift are left free: they track the new data's statistics.
        variable.regularizer = (
            TowardStart(ops.convert_to_numpy(variable), strength) if strength > 0 else None
        )
        count += strength > 0
    return count
