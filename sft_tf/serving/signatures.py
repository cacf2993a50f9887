"""The SavedModel's serving signatures (bytes, pixels, tf.train.Example in; probabilities,
top-k names, ids and scores out, plus `predicted` for multi-label models and a per-row
`error`) and TF Serving's warm-up records, written into an export's staging folder
(`export.export_for_serving`).

A serving call answers a whole batch with one set of tensors, and one refused image must not
cost the others their answers: an encoded image over the export's pixel limit (width x height
from its header) is never decoded; its row's `error` says why, its classes are "", its class
ids -1 and its probabilities and scores 0. Every other row's `error` is "".
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from sft_tf.config.schema import DEFAULT_MAX_IMAGE_PIXELS
from sft_tf.data import decode
from sft_tf.serving.layout import IMAGE_KEY, WARMUP_FILE

BYTES_SPEC = tf.TensorSpec([None], tf.string, name="image_bytes")
PIXELS_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
EXAMPLES_SPEC = tf.TensorSpec([None], tf.string, name="examples")
ERRORS_SPEC = tf.TensorSpec([None], tf.string, name="errors")

# The `error` of a row whose image has too many pixels (tf.strings.format fills the {}s in:
# width, height, their product, the limit). `sft-tf predict` says the same of such a file.
TOO_MANY_PIXELS = (
    "image is {} x {} = {} pixels, above this model's limit of {} pixels "
    "(data.max_image_pixels when it was exported); downscale it before sending"
)


@tf.autograph.experimental.do_not_convert
def pixel_limit_error(encoded: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """Why an encoded image is refused, from its header alone: a scalar tf.string, "" when its
    width x height is within `max_pixels`, else TOO_MANY_PIXELS filled in.

    Raises:
      tf.errors.InvalidArgumentError (when run) on a JPEG whose header is corrupt, as decoding
        it would (`decode.stored_size`).
    """
    height, width = decode.stored_size(encoded)
    # No header holds 2^62 pixels (PNG's sides stop at 2^31): a higher limit, as good as none,
    # still fits an int64.
    limit = tf.constant(min(max_pixels, 2**62), tf.int64)
    # Sides first: a forged header's sides can overflow their int64 product; two sides within
    # the limit cannot.
    over = (height > limit) | (width > limit) | (height * width > limit)
    return tf.cond(
        over,
        lambda: tf.strings.format(TOO_MANY_PIXELS, [width, height, height * width, limit]),
        lambda: tf.constant(""),
    )


def _decode_within_limit(
    encoded: tf.Tensor, image_size: int, resize_method: str, max_pixels: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """(uint8 [S, S, 3], error) of one encoded image: decoded as in training, or, over the
    pixel limit, black pixels that are never looked at and the reason."""
    error = pixel_limit_error(encoded, max_pixels)
    # tf.cond runs one branch only: the refused image's decode never runs, which is the point
    # (a 90 KB PNG of 20000 x 20000 decodes to 1.2 GB of RGB).
    image = tf.cond(
        tf.equal(error, ""),
        lambda: decode.decode_image(encoded, image_size, resize_method),
        lambda: tf.zeros([image_size, image_size, 3], tf.uint8),
    )
    return image, error


def _serving_outputs(
    probabilities: tf.Tensor, errors: tf.Tensor, class_names, top_k: int, thresholds
) -> dict:
    """The signatures' outputs; a row with an error answers nothing (see the module's doc)."""
    scores, ids = tf.math.top_k(probabilities, k=top_k)
    answered = tf.equal(errors, "")[:, None]
    outputs = {
        "probabilities": tf.where(answered, probabilities, 0.0),
        "classes": tf.where(answered, class_names.lookup(tf.cast(ids, tf.int64)), ""),
        "class_ids": tf.where(answered, tf.cast(ids, tf.int32), -1),
        "scores": tf.where(answered, scores, 0.0),
        "error": errors,
    }
    if thresholds is not None:
        outputs["predicted"] = tf.where(answered, tf.cast(probabilities >= thresholds, tf.int32), 0)
    return outputs


def _class_names_table(labels_path: str) -> tf.lookup.StaticHashTable:
    """Class id -> name, read from labels.txt: line i names class i. The file becomes a
    SavedModel asset (<version>/assets/labels.txt), so the served names and the file cannot
    disagree."""
    return tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            labels_path,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )


def _serving_root(
    model: keras.Model,
    class_names: Sequence[str],
    image_size: int,
    top_k: int,
    labels_path: str,
    resize_method: str = "resize",
    thresholds: Sequence[float] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
):
    """What the SavedModel holds (`_saved_root`) and its three signatures, each traced once:
    (root, {signature name: concrete function}). Encoded images over `max_image_pixels` are
    refused row by row (see the module's doc)."""
    names = _class_names_table(labels_path)
    k = min(top_k, len(class_names))
    cut = None if thresholds is None else tf.constant(thresholds, tf.float32)

    # Traced functions calling traced functions: the model is traced once, in `classify`,
    # which every signature calls on pixels already at the model's size, and the decode (EXIF
    # parse included) once, in `from_bytes`, which the tf.Example signature calls. (Tracing
    # the model per signature cost ~0.5 s each on the tiny model, and the SavedModel held its
    # graph once per signature.) No AutoGraph: decode is written for graphs; Keras does the
    # same for its endpoints.
    sized = tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name="sized_images")

    @tf.function(input_signature=[sized, ERRORS_SPEC], autograph=False)
    def classify(images, errors):
        return _serving_outputs(model(images, training=False), errors, names, k, cut)

    def from_pixels(images):
        # Pixels arrive decoded: nothing to refuse, every row is answered.
        none = tf.fill(tf.shape(images)[:1], "")
        return classify(decode.resize(images, image_size, resize_method), none)

    @tf.function(input_signature=[BYTES_SPEC], autograph=False)
    def from_bytes(image_bytes):
        # The same decode-and-resize as the training pipeline: no train/serve skew.
        images, errors = tf.map_fn(
            lambda b: _decode_within_limit(b, image_size, resize_method, max_image_pixels),
            image_bytes,
            fn_output_signature=(
                tf.TensorSpec([image_size, image_size, 3], tf.uint8),
                tf.TensorSpec([], tf.string),
            ),
        )
        return classify(images, errors)

    def from_examples(examples):
        features = tf.io.parse_example(examples, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
        return from_bytes(features[IMAGE_KEY])

    traced = {}
    for name, fn, spec in (
        ("serving_default", from_bytes, BYTES_SPEC),
        ("serving_images", from_pixels, PIXELS_SPEC),
        ("serving_tf_example", from_examples, EXAMPLES_SPEC),
    ):
        if not isinstance(fn, tf.types.experimental.GenericFunction):
            fn = tf.function(fn, input_signature=[spec], autograph=False)
        traced[name] = fn.get_concrete_function()
    return _saved_root(model, names, traced), traced


def _saved_root(model: keras.Model, names, traced: dict):
    """The object graph keras.export.ExportArchive writes (the variable collections, the table
    among its assets, one attribute per endpoint), with the endpoints as concrete functions.

    Not the archive itself: it keeps each endpoint as a tf.function, and tf.saved_model.save
    traces every tf.function again in its save context (a new cache key), so the whole model
    was traced twice more per export: 3-5 s of a tiny model's 15-19 s export here, measured.
    Concrete functions are saved as they were traced.
    """
    root = tf.__internal__.tracking.AutoTrackable()
    for collection in ("variables", "trainable_variables", "non_trainable_variables"):
        setattr(root, collection, list(getattr(model, collection)))
    # The tf.Variables the functions read, as the archive lists them: without these, a loader
    # that restores through the SavedModel's saver (TF Serving's C++ one, a TF1 session) finds
    # the Keras variables' values but not the variables the graph reads.
    used = {id(v): v for f in traced.values() for v in f.variables}  # trainable ones too
    root._all_variables = list(used.values())
    root._misc_assets = [names]
    for name, function in traced.items():
        setattr(root, name, function)
    return root


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
    staging: Path,
    model,
    class_names,
    image_size,
    encoded,
    *,
    top_k,
    resize_method,
    thresholds,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> None:
    """The SavedModel with its labels asset and TF Serving's warm-up records (of `encoded`,
    real images), in `staging`."""
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "labels.txt"
        labels.write_text("\n".join(class_names) + "\n")
        root, traced = _serving_root(
            model,
            class_names,
            image_size,
            top_k,
            str(labels),
            resize_method,
            thresholds,
            max_image_pixels,
        )
        # Serving never differentiates: not tracing the gradient functions of the graph's ops
        # saves about half of the write (7 s of 16 s on ResNet50, measured).
        options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        tf.saved_model.save(root, str(staging), signatures=traced, options=options)
    (staging / "assets.extra").mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(staging / WARMUP_FILE)) as writer:
        for record in _warmup_records(encoded):
            writer.write(record)
