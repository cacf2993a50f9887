"""Running a model over images: one trace for every batch size, shared traces, and the same
outputs through a plain call as through Keras's predict on replicas."""

import keras
import numpy as np
import tensorflow as tf

from sft_tf.distribute import workers
from sft_tf.evaluation import inference


def _two_outputs() -> keras.Model:
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    return keras.Model(inputs, [hidden, keras.layers.Dense(2)(hidden)])


class _Recorded:
    """Stands in for log.Progress: the batch counts it was given."""

    total = 3

    def __init__(self):
        self.done = []

    def update(self, done):
        self.done.append(done)


def test_outputs_are_every_output_for_every_batch_in_order():
    model = _two_outputs()
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    labelled = tf.data.Dataset.from_tensor_slices((x, np.arange(10))).batch(4)
    progress = _Recorded()
    hidden, logits = inference.outputs(model, labelled, progress)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(hidden, expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, expected[1], rtol=1e-5, atol=1e-6)
    assert progress.done == [1, 2, 3]
    # One batch of images, and a dataset of images alone, give the same.
    np.testing.assert_allclose(inference.outputs(model, x)[1], logits, rtol=1e-5, atol=1e-6)
    images = tf.data.Dataset.from_tensor_slices(x).batch(3)
    np.testing.assert_allclose(inference.outputs(model, images)[1], logits, rtol=1e-5, atol=1e-6)


def test_on_two_replicas_outputs_spreads_batches_through_predict_with_the_same_answers():
    x = np.random.default_rng(1).normal(size=(12, 3)).astype(np.float32)
    alone = _two_outputs()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with mirrored.scope():
        spread = _two_outputs()
    spread.set_weights(alone.get_weights())
    assert workers.local_inference(tf.distribute.get_strategy())
    assert not workers.local_inference(mirrored)
    progress = _Recorded()
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4)
    got = inference.outputs(spread, ds, progress)
    for mine, theirs in zip(got, inference.outputs(alone, ds)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert progress.done == [1, 2, 3]
    assert spread not in inference._INFERENCE  # no plain call of a model on replicas


def test_inference_function_traces_a_model_once_for_every_batch_size():
    """A short last batch reuses the trace (each trace of a model costs ~1 s on MobileNetV2)."""

    traces = []

    def counted(x):
        traces.append(x.shape[0])  # runs once per trace, not per call
        return x * 2.0

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(counted)])
    before = len(traces)
    call = inference.inference_function(model)
    assert inference.inference_function(model) is call
    for batch in (8, 8, 5, 1):
        out = np.asarray(call(np.ones((batch, 3), np.float32)))
        np.testing.assert_array_equal(out, np.full((batch, 3), 2.0))
    assert traces[before:] == [None]  # one trace, with the batch size left open
    # The same values as Keras's own predict.
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(call(x), model.predict(x, verbose=0))


def test_a_model_can_share_the_trace_of_a_model_that_computes_it_among_other_outputs():
    """The phase-1 feature pass runs [features, probabilities]; the evaluations reuse it."""

    traces = []

    def counted(x):
        traces.append(x.shape[0])
        return x * 2.0

    inputs = keras.Input((3,))
    doubled = keras.layers.Lambda(counted)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(doubled))
    combined = keras.Model(inputs, [doubled, model.output])
    inference.share_inference(model, combined, 1)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    before = len(traces)
    features, outputs = inference.inference_function(combined)(x)
    np.testing.assert_array_equal(features, x * 2.0)
    np.testing.assert_array_equal(inference.inference_function(model)(x[:1]), outputs[:1])
    shared = inference.inference_function(model)(x)
    # A model whose own function exists keeps it.
    inference.share_inference(model, keras.Model(inputs, [doubled, model.output]), 1)
    np.testing.assert_array_equal(inference.inference_function(model)(x), outputs)
    assert traces[before:] == [None]  # one trace served all of it
    np.testing.assert_array_equal(shared, model.predict(x, verbose=0))
