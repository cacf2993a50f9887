"""The backbone table: every family builds, splits into whole blocks, and opens block by block."""

import keras
import numpy as np
import pytest

from sft_tf.errors import UserError
from sft_tf.model import backbones, catalog, classifier, unfreeze

# One constructor of every keras.applications family in the table, at its minimum size.
FAMILIES = {
    "MobileNet": {"alpha": 0.25},
    "MobileNetV2": {"alpha": 0.35},
    "MobileNetV3Small": {},
    "EfficientNetB0": {},
    "EfficientNetV2B0": {},
    "ResNet50": {},
    "ResNet50V2": {},
    "DenseNet121": {},
    "Xception": {},
    "InceptionV3": {},
    "InceptionResNetV2": {},
    "NASNetMobile": {},
    "ConvNeXtTiny": {},
    "VGG16": {},
    "VGG19": {},
}


def test_every_family_in_the_table_is_walked():
    families = {spec.family for spec in catalog.BACKBONES.values()}
    walked = {catalog.get(name).family for name in FAMILIES}
    assert walked == families


def _frozen_to_open_tensors(base: keras.Model) -> set:
    """Tensors produced by a non-trainable layer and read by a trainable one."""
    crossing = set()
    for layer in base.layers:
        if not layer.trainable:
            continue
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                if producer in base.layers and not producer.trainable:
                    crossing.add(id(tensor))
    return crossing


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_top_blocks_open_whole_and_grow(name):
    spec = catalog.get(name)
    base = backbones.build_base(name, spec.min_size, None, **FAMILIES[name])
    structure = backbones.block_structure(base, name)
    layer_names = [layer.name for layer in base.layers]
    assert structure.stem + [n for _, b in structure.blocks for n in b] + structure.top == (
        layer_names
    )
    n = len(structure.blocks)
    assert n >= catalog.FEWEST_BLOCKS, structure.block_names  # validation relies on it

    previous = 0
    for k in range(1, n + 1):
        opened = unfreeze.unfreeze_top_blocks(base, name, k, train_batchnorm=True)
        assert opened == structure.block_names[n - k :] if k < n else opened[0] == "stem"
        flags = [layer.trainable for layer in base.layers]
        first = flags.index(True)
        # The opened layers are a suffix of the base: blocks above, and the top, come along.
        assert all(flags[first:]), f"k={k}: a frozen layer above an opened one"
        # Whole blocks: only the frozen part's output(s) feed the opened part.
        assert len(_frozen_to_open_tensors(base)) <= spec.max_crossing, f"k={k}"
        trainable = classifier.count_params(base.trainable_weights)
        assert trainable > previous, f"k={k}: opening {opened[0]} added no parameters"
        previous = trainable
    assert all(layer.trainable for layer in base.layers)  # k = n opens the stem too


def test_batchnorm_stays_frozen_inside_opened_blocks():
    base = backbones.build_base("MobileNetV2", 32, None, alpha=0.35)
    opened = unfreeze.unfreeze_top_blocks(base, "MobileNetV2", 2)
    assert opened == ["block_15", "block_16"]
    assert not base.get_layer("block_16_project_BN").trainable
    assert base.get_layer("block_16_project").trainable
    assert base.get_layer("Conv_1").trainable  # the top comes with the top block
    assert not base.get_layer("block_14_project").trainable


def test_resnet_residual_block_is_one_unit():
    base = backbones.build_base("ResNet50", 32, None)
    unfreeze.unfreeze_top_blocks(base, "ResNet50", 1)
    open_layers = {layer.name for layer in base.layers if layer.trainable}
    assert "conv5_block3_1_conv" in open_layers and "conv5_block3_out" in open_layers
    assert not any(name.startswith("conv5_block2") for name in open_layers)


def test_zero_blocks_opens_nothing():
    base = backbones.build_base("MobileNetV2", 32, None, alpha=0.35)
    assert unfreeze.unfreeze_top_blocks(base, "MobileNetV2", 0) == []
    assert base.trainable_weights == []


@pytest.mark.parametrize("name", ["ResNet50", "VGG16", "Xception", "EfficientNetB0"])
def test_preprocess_input_runs_inside_the_model(name):
    spec = catalog.get(name)
    net = classifier.build_classifier(name, 3, spec.min_size, weights="")
    images = np.random.default_rng(0).integers(0, 256, (2, spec.min_size, spec.min_size, 3))
    probs = net.predict(images.astype("uint8"), verbose=0)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_image_size_below_minimum_names_the_fix():
    with pytest.raises(
        UserError, match="image_size=16 is below MobileNetV2's minimum 32; use >= 32"
    ):
        backbones.build_base("MobileNetV2", 16)
    with pytest.raises(UserError, match="minimum 75"):
        backbones.build_base("InceptionV3", 64)


def test_option_the_backbone_lacks_is_an_error():
    with pytest.raises(UserError, match="config.model.alpha is not an argument of ResNet50"):
        backbones.build_base("ResNet50", 32, alpha=0.5)
