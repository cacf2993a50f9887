"""The backbone table: names with suggestions, minimum sizes and options, without TensorFlow."""

import pytest

from sft_tf.errors import UserError
from sft_tf.model import catalog
from tests.helpers import fresh_python


def test_unknown_backbone_suggests_the_closest_name():
    with pytest.raises(UserError, match=r"'EfficentNetB0'.*did you mean 'EfficientNetB0'"):
        catalog.get("EfficentNetB0")
    with pytest.raises(UserError, match=r"'mobilenetv2'.*did you mean 'MobileNetV2'"):
        catalog.get("mobilenetv2")


def test_check_model_names_the_minimum_size_and_unknown_arguments():
    assert catalog.check_model("InceptionV3", 75, {}).family == "inception_v3"
    with pytest.raises(UserError, match="image_size=64 is below InceptionV3's minimum 75"):
        catalog.check_model("InceptionV3", 64, {})
    with pytest.raises(UserError, match="config.model.alpha is not an argument of ResNet50"):
        catalog.check_model("ResNet50", 32, {"alpha": 0.5})
    assert catalog.check_model("MobileNetV2", 32, {"alpha": 0.35}).options == ("alpha",)


def test_every_entry_names_a_keras_application_and_the_table_loads_without_tensorflow():
    probe = (
        "import sys\n"
        "from sft_tf.model import catalog\n"
        "print('tensorflow' in sys.modules)\n"
        "import keras\n"
        "missing = [n for n in catalog.names() if not hasattr(keras.applications, n)]\n"
        "families = {b.family for b in catalog.BACKBONES.values()}\n"
        "missing += [f for f in families if not hasattr(getattr(keras.applications, f), "
        "'preprocess_input')]\n"
        "print(missing)\n"
    )
    result = fresh_python(probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["False", "[]"]
