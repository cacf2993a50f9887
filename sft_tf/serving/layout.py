"""The export contract: what a version folder holds and what its signatures are called.

TF Serving clients, `sft-tf predict` and the tests all read exports through these names; they
change only with a reader for exports written before.
"""

from __future__ import annotations

# Signatures: encoded image bytes, decoded uint8 pixels, serialized tf.train.Example records.
SIGNATURES = ("serving_default", "serving_images", "serving_tf_example")
LABELS_FILE = "assets/labels.txt"
MANIFEST_FILE = "assets.extra/sft_tf.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
TFLITE_DIR = "assets.extra/tflite"
ONNX_DIR = "assets.extra/onnx"
# A version is written under this prefix and renamed to its number once verified.
STAGING_PREFIX = ".staging-"
# Feature key of the encoded image in tf.train.Example records (TF Model Garden's layout).
IMAGE_KEY = "image/encoded"
