"""The classifier, its preprocessing, the BatchNorm policy, recalibration and weight files."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf import model as model_lib
from sft_tf.errors import UserError
from tests.conftest import tiny_classifier

TINY = {"backbone": "MobileNetV2", "image_size": 32, "alpha": 0.35}


def _tiny_model(num_classes=3, batchnorm="frozen", weights="", calibrated=False):
    if calibrated:
        return tiny_classifier(num_classes, batchnorm=batchnorm, weights=weights)
    return model_lib.build_classifier(
        num_classes=num_classes, weights=weights, batchnorm=batchnorm, **TINY
    )


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, n)


def test_classifier_contract():
    model = _tiny_model(num_classes=4)
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 32, 32, 3)
    out = model(_batch(2)[0])
    assert out.shape == (2, 4) and out.dtype == "float32"
    np.testing.assert_allclose(np.sum(out, -1), 1.0, rtol=1e-5)
    # Only the head trains while the base is frozen: Dense kernel and bias.
    assert [w.path.split("/")[-1] for w in model.trainable_weights] == ["kernel", "bias"]
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


@pytest.mark.parametrize(
    "backbone, module",
    [("MobileNetV2", "mobilenet_v2"), ("VGG16", "vgg16"), ("DenseNet121", "densenet")],
)
def test_preprocess_layer_is_the_families_own(backbone, module):
    images = _batch(4)[0]
    expected = getattr(keras.applications, module).preprocess_input(images.astype("float32"))
    got = model_lib.Preprocess(backbone)(images)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-4)
    layer = model_lib.Preprocess.from_config(model_lib.Preprocess(backbone).get_config())
    assert layer.backbone == backbone


def _bn_and_conv_of_top_block(base):
    block = [layer for layer in base.layers if layer.name.startswith("block_16_")]
    bn = next(layer for layer in block if isinstance(layer, keras.layers.BatchNormalization))
    conv = next(layer for layer in block if isinstance(layer, keras.layers.Conv2D))
    return bn, conv


@pytest.mark.parametrize("policy", ["frozen", "train"])
def test_batchnorm_policy_in_phase2(policy):
    model = _tiny_model(batchnorm=policy, calibrated=True)
    base = model_lib.get_base(model)
    opened = model_lib.unfreeze_top_blocks(
        base, "MobileNetV2", 1, train_batchnorm=policy == "train"
    )
    assert opened == ["block_16"]
    bn, conv = _bn_and_conv_of_top_block(base)
    stem_conv = base.get_layer("Conv1")
    before = [np.array(v) for v in (bn.moving_mean, bn.gamma, conv.kernel, stem_conv.kernel)]
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x, y = _batch(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = [np.array(v) for v in (bn.moving_mean, bn.gamma, conv.kernel, stem_conv.kernel)]
    moved = [not np.allclose(a, b) for a, b in zip(before, after)]
    # [BN statistics, BN scale, opened conv, frozen stem conv]
    assert moved == (
        [True, True, True, False] if policy == "train" else [False, False, True, False]
    )


def test_trainable_params_grow_with_open_blocks():
    model = _tiny_model()
    base = model_lib.get_base(model)
    counts = []
    for k in (0, 1, 2, 3, -1):
        model_lib.unfreeze_top_blocks(base, "MobileNetV2", k)
        counts.append(model_lib.count_params(model.trainable_weights))
    assert counts == sorted(counts) and len(set(counts)) == 5


def test_recalibrate_batchnorm_matches_batch_statistics():
    model = _tiny_model(batchnorm="train")
    base = model_lib.get_base(model)
    model_lib.unfreeze_top_blocks(base, "MobileNetV2", -1, train_batchnorm=True)
    for layer in model_lib.batchnorm_layers(base):
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 5.0, np.float32))
    momenta = [layer.momentum for layer in model_lib.batchnorm_layers(base)]
    images, labels = _batch(32)
    ds = tf.data.Dataset.from_tensors((images, labels)).repeat(3)
    assert model_lib.recalibrate_batchnorm(model, ds, batches=10) == 3
    preprocess = model.get_layer(model_lib.PREPROCESS_LAYER)
    train_mode = base(preprocess(images), training=True)
    inference = base(preprocess(images), training=False)
    # The moving statistics are now exactly this batch's: both modes agree.
    np.testing.assert_allclose(np.asarray(inference), np.asarray(train_mode), atol=2e-3)
    assert [layer.momentum for layer in model_lib.batchnorm_layers(base)] == momenta


def test_backbone_weights_round_trip_and_mismatch(tmp_path):
    base = model_lib.get_base(_tiny_model())
    path = tmp_path / "backbone.weights.h5"
    model_lib.save_backbone_weights(
        base, path, {"backbone": "MobileNetV2", "options": {"alpha": 0.35}}
    )
    assert json.loads((tmp_path / "backbone.json").read_text())["backbone"] == "MobileNetV2"
    loaded = model_lib.get_base(_tiny_model(weights=str(path)))
    for a, b in zip(base.weights, loaded.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    with pytest.raises(UserError, match="was made for MobileNetV2"):
        model_lib.build_classifier("MobileNetV2", 3, 32, weights=str(path), alpha=0.5)
    (tmp_path / "backbone.json").unlink()  # without the sidecar Keras's own check must catch it
    with pytest.raises(UserError, match="does not fit MobileNetV2"):
        model_lib.build_classifier("MobileNetV2", 3, 32, weights=str(path), alpha=0.5)
