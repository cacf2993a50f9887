"""A phase's Keras pieces from the config: the classifier, the optimizer and its schedule,
L2-SP and per-block learning rates, early stopping.
"""

from __future__ import annotations

import keras
import ml_collections

from sft_tf.distribute import strategy as strategy_lib
from sft_tf.log import say
from sft_tf.model import backbones, classifier, losses, optim


def build_model(
    config, num_classes: int, weights: str, batchnorm: str, multi_label: bool | None = None
) -> keras.Model:
    """The classifier of `config.model`; multi_label defaults to `config.data.multi_label`."""
    m = config.model
    if multi_label is None:
        multi_label = config.data.multi_label
    return classifier.build_classifier(
        m.backbone,
        num_classes=num_classes,
        image_size=m.image_size,
        weights=weights,
        pooling=m.pooling,
        dropout=m.dropout,
        batchnorm=batchnorm,
        alpha=m.alpha,
        head_init=m.head_init,
        multi_label=multi_label,
    )


def compile_phase(
    model: keras.Model,
    learning_rate: float,
    warmup_epochs: float,
    epochs: int,
    steps: int,
    compile_options: dict | None = None,
    phase: ml_collections.ConfigDict | None = None,
    rate_scales=(),
    multi_label: bool = False,
    positive_weights=None,
) -> None:
    """The phase's optimizer with linear warm-up then cosine decay to zero over the phase.

    compile_options: jit_compile and steps_per_execution from `build_runtime`. Under mixed_float16
    Keras wraps the optimizer in a LossScaleOptimizer itself.
    phase: the config section with optimizer, weight_decay, momentum, nesterov, clipnorm and
    label_smoothing (None: plain Adam). rate_scales: per-variable learning-rate factors.
    multi_label: sigmoid outputs trained with binary cross-entropy (`losses.multi_label_loss`),
    positive_weights: its per-label weights of positive targets (None: unweighted).
    """
    total = max(1, epochs * steps)
    warmup = min(total - 1, round(warmup_epochs * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=total - warmup,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    smoothing = phase.label_smoothing if phase else 0.0
    loss, metrics = _loss_and_metrics(
        model.output_shape[-1], smoothing, multi_label, positive_weights
    )
    if phase is None:
        optimizer = optim.build_optimizer("adam", schedule)
    else:
        optimizer = optim.build_optimizer(
            phase.optimizer,
            schedule,
            weight_decay=phase.weight_decay,
            momentum=phase.momentum,
            nesterov=phase.nesterov,
            clipnorm=phase.clipnorm,
        )
    optimizer.set_rate_scales(rate_scales)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        **(compile_options or {}),
    )


def _loss_and_metrics(num_classes: int, smoothing: float, multi_label: bool, positive_weights):
    if multi_label:
        # Multi-hot targets (soft after mixing); accuracy per label at 0.5, the tuned
        # thresholds come after training.
        loss = losses.multi_label_loss(positive_weights, smoothing)
        return loss, [keras.metrics.BinaryAccuracy(name="binary_accuracy")]
    # The pipelines give one-hot labels (soft ones after mixup/cutmix).
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), metrics


def phase2_recipe(config, base: keras.Model, opened: list[str]) -> list:
    """Applies L2-SP to the opened layers; returns the per-block learning-rate factors."""
    p2 = config.phase2
    structure = backbones.block_structure(base, config.model.backbone)
    blocks = [(name, layers) for name, layers in structure.blocks if name in opened]
    if p2.l2sp:
        # BatchNorm scale and shift stay free: they follow the new data's statistics.
        weights = [
            w
            for layer in base.layers
            if layer.trainable and not isinstance(layer, keras.layers.BatchNormalization)
            for w in layer.trainable_weights
        ]
        count = optim.apply_l2sp(weights, p2.l2sp)
        say(f"L2-SP {p2.l2sp:g} toward the starting weights on {count} variables")
    if p2.layer_decay == 1.0:
        return []
    return optim.block_rate_scales(base, blocks, p2.layer_decay)


def early_stopping(phase: ml_collections.ConfigDict, val_ds) -> list[keras.callbacks.Callback]:
    """Stop on a stalled validation loss and go back to the best epoch's weights (per phase)."""
    if not phase.early_stopping_patience or val_ds is None:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=phase.early_stopping_patience,
            restore_best_weights=True,
            verbose=1,
        )
    ]


def phase_learning_rate(config, learning_rate: float) -> float:
    return strategy_lib.scaled_learning_rate(
        learning_rate, config.data.global_batch_size, config.runtime.lr_scaling
    )
