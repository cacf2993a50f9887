"""The classifier cut at the first opened block: lower then trainee is the whole classifier."""

import numpy as np
import pytest

from sft_tf.model import classifier, cut, unfreeze
from sft_tf.model.classifier import get_base
from tests.helpers import random_batch, tiny_classifier


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_lower_then_trainee_is_the_classifier(blocks):
    model = tiny_classifier()
    opened = unfreeze.unfreeze_top_blocks(get_base(model), "MobileNetV2", blocks)
    index = cut.boundary_index(get_base(model), "MobileNetV2", opened)
    parts = cut.cut_classifier(model, index, "frozen")
    images, _ = random_batch(8)
    whole = model.predict(images, verbose=0)
    np.testing.assert_allclose(parts.trainee(parts.lower(images)), whole, atol=1e-5)
    assert parts.inputs == 1
    assert parts.boundary == (get_base(model).layers[index].name if blocks else "pool")
    # The trainee trains exactly the classifier's trainable variables (the same objects).
    assert {id(v) for v in parts.trainee.trainable_variables} == {
        id(v) for v in model.trainable_variables
    }
    # The classifier's own layers keep one inbound node: others read their outputs by name.
    assert model.get_layer("pool").output is not None


def test_whole_base_open_has_no_cut():
    model = tiny_classifier()
    opened = unfreeze.unfreeze_top_blocks(get_base(model), "MobileNetV2", -1)
    assert cut.boundary_index(get_base(model), "MobileNetV2", opened) is None


@pytest.mark.slow  # NASNetMobile takes seconds to build
def test_nasnet_cells_read_two_tensors_across_the_cut():
    model = classifier.build_classifier("NASNetMobile", 3, 32)
    base = get_base(model)
    opened = unfreeze.unfreeze_top_blocks(base, "NASNetMobile", 2)
    parts = cut.cut_classifier(model, cut.boundary_index(base, "NASNetMobile", opened), "frozen")
    assert parts.inputs == 2
    images, _ = random_batch(4)
    np.testing.assert_allclose(
        parts.trainee(parts.lower(images)), model.predict(images, verbose=0), atol=1e-5
    )


def test_training_mode_below_the_cut_is_found():
    model = classifier.build_classifier("EfficientNetB0", 3, 32)
    base = get_base(model)
    opened = unfreeze.unfreeze_top_blocks(base, "EfficientNetB0", 2, train_batchnorm=True)
    index = cut.boundary_index(base, "EfficientNetB0", opened)
    # EfficientNet's blocks drop whole branches in training mode (stochastic depth).
    below = cut.training_mode_below(base, index, "train")
    assert below and all(name.endswith("drop") for name in below)
    assert cut.training_mode_below(base, index, "frozen") == []
