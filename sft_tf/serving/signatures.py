"""The SavedModel's serving signatures (bytes, pixels, tf.train.Example in; probabilities,
top-k names, ids and scores out, plus `predicted` for multi-label models) and TF Serving's
warm-up records, written into an export's staging folder (`export.export_for_serving`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from sft_tf.data import decode
from sft_tf.serving.layout import IMAGE_KEY, WARMUP_FILE

BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")


def _serving_outputs(probabilities: tf.Tensor, class_names, top_k: int, thresholds) -> dict:
    scores, ids = tf.math.top_k(probabilities, k=top_k)
    outputs = {
        "probabilities": probabilities,
        "classes": class_names.lookup(tf.cast(ids, tf.int64)),
        "class_ids": tf.cast(ids, tf.int32),
        "scores": scores,
    }
    if thresholds is not None:
        outputs["predicted"] = tf.cast(probabilities >= thresholds, tf.int32)
    return outputs


def _build_archive(
    model: keras.Model,
    class_names: Sequence[str],
    image_size: int,
    top_k: int,
    labels_path: str,
    resize_method: str = "resize",
    thresholds: Sequence[float] | None = None,
) -> keras.export.ExportArchive:
    # Line i of labels.txt names class i. The file becomes a SavedModel asset
    # (<version>/assets/labels.txt), so the served names and the file cannot disagree.
    names = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            labels_path,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    k = min(top_k, len(class_names))
    cut = None if thresholds is None else tf.constant(thresholds, tf.float32)

    def from_pixels(images):
        return _serving_outputs(
            model(decode.resize(images, image_size, resize_method), training=False), names, k, cut
        )

    # One traced function for both bytes-in signatures: the tf.Example one calls it instead
    # of tracing the decode (EXIF parse included) and the model a second time.
    # No AutoGraph (decode is written for graphs; Keras does the same for its endpoints).
    @tf.function(input_signature=[BYTES_SPEC], autograph=False)
    def from_bytes(image_bytes):
        # The same decode-and-resize as the training pipeline: no train/serve skew.
        images = tf.map_fn(
            lambda b: decode.decode_image(b, image_size, resize_method),
            image_bytes,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
        )
        return _serving_outputs(model(images, training=False), names, k, cut)

    def from_examples(examples):
        features = tf.io.parse_example(examples, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
        return from_bytes(features[IMAGE_KEY])

    archive = keras.export.ExportArchive()
    # The model's variables as `archive.track(model)` lists them, without the walk over every
    # layer that track() adds to find lookup tables (the classifier has none): 1.5 of the 4.7 s
    # a small model's write takes, measured. The table of class names is tracked by hand.
    for collection in ("variables", "trainable_variables", "non_trainable_variables"):
        archive.add_variable_collection(collection, getattr(model, collection))
    archive.track(names)
    for name, fn, spec in (
        ("serving_default", from_bytes, BYTES_SPEC),
        ("serving_images", from_pixels, tf.TensorSpec([None, None, None, 3], tf.uint8, "images")),
        ("serving_tf_example", from_examples, tf.TensorSpec([None], tf.string, name="examples")),
    ):
        archive.add_endpoint(name, fn, input_signature=None if fn is from_bytes else [spec])
    return archive


def _warmup_records(encoded: Sequence[bytes], count: int = 3) -> list[bytes]:
    """PredictionLog records for TF Serving's warm-up: serving_default on real images."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    records = []
    for b in list(encoded)[:count]:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(signature_name="serving_default")
        )
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b], dtype=tf.string))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )
        records.append(log.SerializeToString())
    return records


def write_savedmodel(
    staging: Path, model, class_names, image_size, top_k, resize_method, thresholds, encoded
) -> None:
    """The SavedModel with its labels asset and TF Serving's warm-up records, in `staging`."""
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "labels.txt"
        labels.write_text("\n".join(class_names) + "\n")
        archive = _build_archive(
            model, class_names, image_size, top_k, str(labels), resize_method, thresholds
        )
        # Serving never differentiates: not tracing the gradient functions of the graph's ops
        # saves about half of the write (7 s of 16 s on ResNet50, measured).
        options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        archive.write_out(str(staging), options=options, verbose=False)
    (staging / "assets.extra").mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(staging / WARMUP_FILE)) as writer:
        for record in _warmup_records(encoded):
            writer.write(record)
