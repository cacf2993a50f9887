"""Running a trained model over images: the one place that decides between a plain call of
the model and Keras's predict.

`outputs` is what every caller uses (the test evaluations, the phase-1 feature pass, phase
2's activation cache, the export's parity checks). It calls the model through
`inference_function` where this process computes all of the outputs itself
(`workers.local_inference`: one replica, or each of several workers), and through Keras's
predict where the batches are spread over this process's replicas (Mirrored on several GPUs,
TPU).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from sft_tf.distribute import workers

_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def outputs(model, data, progress=None) -> list[np.ndarray]:
    """Every output of `model` for all of `data`, in order.

    Args:
      model: a Keras model.
      data: one batch of images (array or tensor), or a dataset of image batches or of
        (images, labels, ...) batches (only the images are used).
      progress: a `log.Progress` over batches, updated after each one (optional; shown only
        when it has a total).

    Returns:
      one array per model output, [N, ...] each.
    """
    if not isinstance(data, tf.data.Dataset):
        data = tf.data.Dataset.from_tensors(data)
    shown = progress if progress is not None and progress.total else None
    if not workers.local_inference(model.distribute_strategy):
        callbacks = [_ShowProgress(shown)] if shown else None
        return [
            np.asarray(out)
            for out in tf.nest.flatten(model.predict(data, verbose=0, callbacks=callbacks))
        ]
    call = inference_function(model)
    batches = []
    for done, element in enumerate(data, 1):
        images = element[0] if isinstance(element, tuple) else element
        batches.append([np.asarray(out) for out in tf.nest.flatten(call(images))])
        if shown is not None:
            shown.update(done)
    if not batches:
        raise ValueError("no batches to run the model on")
    return [np.concatenate(column) for column in zip(*batches)]


def collect_predictions(
    predict: Callable[[tf.Tensor], np.ndarray], dataset: tf.data.Dataset
) -> tuple[np.ndarray, np.ndarray]:
    """Runs `predict` (e.g. an export's serving function) over (images, labels) batches.

    Returns:
      (probabilities float [N, C], labels int [N]).
    """
    probs, labels = [], []
    for images, y, *_ in dataset:
        probs.append(np.asarray(predict(images)))
        labels.append(y.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def inference_function(model) -> Callable[[tf.Tensor], tf.Tensor]:
    """`model(images, training=False)` as one tf.function per model and input type, traced
    once for any batch size and shared by every later call: the phase-1 feature pass, phase
    2's activation cache, the test evaluations after each phase, calibration and the report.
    (Keras's `predict` traces again after every `compile`, i.e. once per phase, and again for a
    smaller last batch: ~1 s each on MobileNetV2.) It runs where a plain call runs, so it is
    for models that are not spread over several replicas: `outputs` decides."""
    fn = _INFERENCE.get(model)
    if fn is None:
        fn = _INFERENCE[model] = _AnyBatch(weakref.ref(model))  # must not keep it alive
    return fn


def share_inference(model, combined, output: int) -> None:
    """Makes `inference_function(model)` run `combined`, a model with `model`'s inputs that
    computes `model`'s outputs as its output number `output` beside others, so the two share
    one trace. (The phase-1 feature pass runs a model giving the pooled features and the
    probabilities: the test evaluations then trace nothing more.) Does nothing once `model`'s
    own function exists."""
    if model not in _INFERENCE:
        _INFERENCE[model] = _Output(inference_function(combined), output)


class _Output:
    """One output of another inference function."""

    def __init__(self, call: Callable, output: int):
        self.call, self.output = call, output

    def __call__(self, images) -> tf.Tensor:
        return self.call(images)[self.output]


class _AnyBatch:
    """Calls a model through a tf.function whose signature leaves the batch size open, made
    on the first call with each image shape and dtype, so a partial last batch reuses the
    trace (tf.function's own relaxation would trace a second time to get there)."""

    def __init__(self, model_ref: weakref.ref):
        self.model_ref = model_ref
        self.traced: dict = {}

    def __call__(self, images) -> tf.Tensor:
        images = tf.convert_to_tensor(images)
        key = (images.dtype, tuple(images.shape[1:]))
        fn = self.traced.get(key)
        if fn is None:
            spec = tf.TensorSpec([None, *images.shape[1:]], images.dtype)
            fn = tf.function(self._call, input_signature=[spec])
            self.traced[key] = fn
        return fn(images)

    def _call(self, images):
        return self.model_ref()(images, training=False)


class _ShowProgress(keras.callbacks.Callback):
    """Feeds Keras's predict loop's batch count to a `Progress`."""

    def __init__(self, progress):
        super().__init__()
        self.progress = progress

    def on_predict_batch_end(self, batch, logs=None):
        self.progress.update(batch + 1)
