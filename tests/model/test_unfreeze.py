"""Opening the top blocks, the BatchNorm policy in phase 2, and BatchNorm recalibration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sft_tf.model import classifier, unfreeze
from tests.helpers import random_batch, tiny_model


def _bn_and_conv_of_top_block(base):
    block = [layer for layer in base.layers if layer.name.startswith("block_16_")]
    bn = next(layer for layer in block if isinstance(layer, keras.layers.BatchNormalization))
    conv = next(layer for layer in block if isinstance(layer, keras.layers.Conv2D))
    return bn, conv


@pytest.mark.parametrize("policy", ["frozen", "train"])
def test_batchnorm_policy_in_phase2(policy):
    model = tiny_model(batchnorm=policy, calibrated=True)
    base = classifier.get_base(model)
    opened = unfreeze.unfreeze_top_blocks(base, "MobileNetV2", 1, train_batchnorm=policy == "train")
    assert opened == ["block_16"]
    bn, conv = _bn_and_conv_of_top_block(base)
    stem_conv = base.get_layer("Conv1")
    before = [np.array(v) for v in (bn.moving_mean, bn.gamma, conv.kernel, stem_conv.kernel)]
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x, y = random_batch(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after = [np.array(v) for v in (bn.moving_mean, bn.gamma, conv.kernel, stem_conv.kernel)]
    moved = [not np.allclose(a, b) for a, b in zip(before, after)]
    # [BN statistics, BN scale, opened conv, frozen stem conv]
    assert moved == (
        [True, True, True, False] if policy == "train" else [False, False, True, False]
    )


def test_trainable_params_grow_with_open_blocks():
    model = tiny_model()
    base = classifier.get_base(model)
    counts = []
    for k in (0, 1, 2, 3, -1):
        unfreeze.unfreeze_top_blocks(base, "MobileNetV2", k)
        counts.append(classifier.count_params(model.trainable_weights))
    assert counts == sorted(counts) and len(set(counts)) == 5


def test_recalibrate_batchnorm_matches_batch_statistics():
    model = tiny_model(batchnorm="train")
    base = classifier.get_base(model)
    unfreeze.unfreeze_top_blocks(base, "MobileNetV2", -1, train_batchnorm=True)
    for layer in unfreeze.batchnorm_layers(base):
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 5.0, np.float32))
    momenta = [layer.momentum for layer in unfreeze.batchnorm_layers(base)]
    images, labels = random_batch(32)
    ds = tf.data.Dataset.from_tensors((images, labels)).repeat(3)
    assert unfreeze.recalibrate_batchnorm(model, ds, batches=10) == 3
    preprocess = model.get_layer(classifier.PREPROCESS_LAYER)
    train_mode = base(preprocess(images), training=True)
    inference = base(preprocess(images), training=False)
    # The moving statistics are now exactly this batch's: both modes agree.
    np.testing.assert_allclose(np.asarray(inference), np.asarray(train_mode), atol=2e-3)
    assert [layer.momentum for layer in unfreeze.batchnorm_layers(base)] == momenta
