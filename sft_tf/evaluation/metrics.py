"""Metrics from predictions: accuracy, top-k, per-class precision/recall/F1, calibration."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from sft_tf.distribute import workers

_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_function(model) -> Callable[[tf.Tensor], tf.Tensor]:
    """`model(images, training=False)` as one tf.function per model and input type, traced
    once for any batch size and shared by every later call: the phase-1 feature pass, phase
    2's activation cache, the test evaluations after each phase, calibration and the report.
    (Keras's `predict` traces again after every `compile`, i.e. once per phase, and again for a
    smaller last batch: ~1 s each on MobileNetV2.) It runs where a plain call runs, so it is
    for models that are not spread over several replicas."""
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


def predict_pixels(model, pixels) -> np.ndarray:
    """The model's outputs for one batch of pixels: through `inference_function` (no new
    trace) where the model is on one replica, else Keras's predict."""
    if workers.single_replica(model.distribute_strategy):
        return inference_function(model)(pixels).numpy()
    return model.predict(pixels, verbose=0)


def collect_predictions(
    predict: Callable[[tf.Tensor], np.ndarray], dataset: tf.data.Dataset, progress=None
) -> tuple[np.ndarray, np.ndarray]:
    """Runs `predict` over (images, labels) batches.

    progress: a `log.Progress` over batches, updated after each one (optional).

    Returns:
      (probabilities float [N, C], labels int [N]).
    """
    probs, labels = [], []
    for done, (images, y, *_) in enumerate(dataset, 1):
        probs.append(np.asarray(predict(images)))
        labels.append(y.numpy())
        if progress is not None:
            progress.update(done)
    return np.concatenate(probs), np.concatenate(labels)


CALIBRATION_BINS = 15


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS):
    """Expected calibration error and the per-bin numbers behind a reliability diagram.

    Top-1 confidences are split into `bins` equal-width bins; ECE is the example-weighted mean
    |accuracy - confidence| over the bins.

    Returns:
      (ece, [{"count", "confidence", "accuracy"} per bin]).
    """
    confidence = probabilities.max(-1)
    correct = probabilities.argmax(-1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if count:
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += count / len(labels) * abs(acc - conf)
        else:
            acc = conf = 0.0
        table.append({"count": count, "confidence": round(conf, 4), "accuracy": round(acc, 4)})
    return ece, table


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], top_k: int = 5
) -> dict:
    """Accuracy, top-k accuracy, per-class precision/recall/F1, calibration, confusion matrix.

    Args:
      probabilities: float [N, C].
      labels: int [N].
      class_names: C names.
      top_k: k for the top-k accuracy; left out when k >= C, where it is always 1.

    Returns:
      A JSON-able dict.
    """
    n_classes = len(class_names)
    labels = np.asarray(labels)
    predicted = probabilities.argmax(-1)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    hits = np.diag(confusion).astype(np.float64)
    support = confusion.sum(1)
    claimed = confusion.sum(0)
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    precision = np.divide(hits, claimed, out=np.zeros(n_classes), where=claimed > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(n_classes), where=total > 0)
    loss = negative_log_likelihood(probabilities, labels)
    ece, bins = calibration(probabilities, labels)

    def averages(weights):
        return {
            "precision": round(float(np.average(precision, weights=weights)), 4),
            "recall": round(float(np.average(recall, weights=weights)), 4),
            "f1": round(float(np.average(f1, weights=weights)), 4),
            "support": int(support.sum()),
        }

    top_k_accuracy = {}
    if top_k < n_classes:
        top = np.argsort(-probabilities, axis=-1)[:, :top_k]
        hit = (top == labels[:, None]).any(-1)
        top_k_accuracy[f"top{top_k}_accuracy"] = round(float(np.mean(hit)), 4)
    return {
        "examples": len(labels),
        "accuracy": round(float(np.mean(predicted == labels)), 4),
        **top_k_accuracy,
        "loss": round(loss, 4),
        "ece": round(ece, 4),
        "per_class_recall": {name: round(float(r), 4) for name, r in zip(class_names, recall)},
        "per_class": {
            name: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro_avg": averages(None),
        "weighted_avg": averages(support if support.sum() else None),
        "calibration_bins": bins,
        "confusion_matrix": confusion.tolist(),
    }


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a temperature-scaled model gives."""
    logits = np.log(np.maximum(probabilities.astype(np.float64), np.finfo(np.float32).tiny))
    logits /= temperature
    logits -= logits.max(-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(-1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class), with p floored at the smallest positive float32."""
    picked = probabilities[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.maximum(picked, np.finfo(np.float32).tiny))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (0.05 to 20) that minimises the negative log-likelihood of `labels`.

    Temperature scaling (Guo et al., 2017) fits one number on held-out data; the argmax, and so
    every accuracy, is unchanged. The NLL is a smooth one-dimensional function of log T: a
    coarse log-spaced grid finds its basin and a fine grid around the best point refines it to
    about 0.1%.
    """

    def best(candidates: np.ndarray) -> float:
        losses = [
            negative_log_likelihood(apply_temperature(probabilities, t), labels) for t in candidates
        ]
        return float(candidates[int(np.argmin(losses))])

    low, high = np.log(0.05), np.log(20.0)
    coarse = np.log(best(np.exp(np.linspace(low, high, 61))))
    step = (high - low) / 60
    return best(np.exp(np.linspace(max(low, coarse - step), min(high, coarse + step), 41)))
