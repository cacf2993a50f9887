"""Validation: every config file validates, messages name the field and the fix."""

import pytest

from sft_tf.config import validation
from sft_tf.errors import UserError
from tests.helpers import CONFIG_FILES, REPO, load_config, tiny_config


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_files_load_and_validate(path, image_folders):
    config = load_config(path)
    if not config.data.train:  # configs/tiny.py takes its data on the command line
        config.data.train = f"folder:{image_folders['train']}"
    assert config.name
    # Configs are runnable documentation: the docstring holds the command.
    assert "sft-tf " in path.read_text().split('"""')[1]
    validation.validate(config, "pretrain" if config.pretrain.train else "train")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model__image_size": 16}, "image_size=16 is below MobileNetV2's minimum 32; use >= 32"),
        ({"model__backbone": "MobilenetV2"}, "did you mean 'MobileNetV2'"),
        ({"model__pooling": "mean"}, "config.model.pooling='mean' must be 'avg' or 'max'"),
        ({"model__dropout": 1.0}, r"config.model.dropout=1.0 must be in \[0, 1\)"),
        ({"model__weights": "/nope.h5"}, "config.model.weights='/nope.h5' is not a file"),
        ({"data__train": "/data/train"}, "config.data.train='/data/train' is not a dataset spec"),
        ({"data__train": ""}, "config.data.train is empty"),
        ({"data__global_batch_size": 0}, "global_batch_size=0 must be >= 1"),
        ({"data__max_image_pixels": 0}, "config.data.max_image_pixels=0 must be >= 1"),
        ({"phase2__batchnorm": "on"}, "config.phase2.batchnorm='on' must be 'frozen' or 'train'"),
        ({"phase2__unfreeze_blocks": -2}, "unfreeze_blocks=-2 must be >= 0"),
        ({"phase1__learning_rate": 0.0}, "phase1.learning_rate=0.0 must be > 0"),
        ({"name": "my model"}, "config.name='my model' must be a folder name"),
        ({"data__augment": "blur"}, "unknown \\['blur'\\]"),
        ({"phase2__cache_frozen": "yes"}, "config.phase2.cache_frozen='yes' must be one of"),
        (
            {"phase2__cache_frozen": "on", "data__augment": "flip,rotate"},
            "cache_frozen='on' works with data.augment '' or 'flip'.*rotate changes",
        ),
        (
            {"phase2__cache_frozen": "on", "phase2__unfreeze_blocks": -1},
            "cache_frozen='on' needs a frozen part",
        ),
    ],
)
def test_validate_names_field_and_fix(changes, message):
    with pytest.raises(UserError, match=message):
        validation.validate(tiny_config(**changes), "train")


def test_alpha_only_for_mobilenets():
    config = tiny_config(model__backbone="ResNet50")
    with pytest.raises(UserError, match="ResNet50 has no width multiplier"):
        validation.validate(config, "train")


def test_resample_and_class_weighting_are_exclusive(image_folders):
    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    config.data.resample = "balanced"
    config.data.class_weighting = "balanced"
    with pytest.raises(UserError, match="set one of them to 'none'"):
        validation.validate(config, "train")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"data__multi_label": True}, "multi_label=true needs csv: or tfrecord: data"),
        (
            {"data__train": "csv:/x.csv", "data__multi_label": True, "data__resample": "balanced"},
            "class_weighting=balanced \\(per-label weights\\)",
        ),
        (
            {"data__train": "csv:/x.csv", "data__multi_label": True, "export__calibrate": True},
            "thresholds are tuned on validation instead",
        ),
        (
            {"data__train": "csv:/x.csv", "data__multi_label": True, "data__label_delimiter": ""},
            "config.data.label_delimiter is empty",
        ),
        ({"data__train": "csv:/x.csv", "data__csv_label_column": " "}, "csv_label_column is empty"),
    ],
)
def test_multi_label_and_csv_settings_name_field_and_fix(changes, message):
    with pytest.raises(UserError, match=message):
        validation.validate(tiny_config(**changes), "train")
    config = tiny_config(data__train="csv:/data/labels.csv:train", data__multi_label=True)
    config.data.validation = "split:0.2"
    validation.validate(config, "train")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"export__tflite_quantization": "int4"}, "must be 'float16', 'dynamic_range' or 'int8'"),
        ({"export__representative_examples": 0}, "representative_examples=0 must be >= 1"),
        ({"export__max_accuracy_drop": 1.5}, r"max_accuracy_drop=1.5 must be in \[0, 1\]"),
    ],
)
def test_export_variant_settings_name_field_and_fix(changes, message):
    with pytest.raises(UserError, match=message):
        validation.validate(tiny_config(**changes), "train")
    validation.validate(tiny_config(export__onnx=True, export__tflite_quantization="int8"), "train")


def test_a_random_frozen_base_is_warned_about(capsys):
    """With no pretrained weights the frozen base computes random features: say so, with the
    ways out; not when the whole network trains, nor for the demo (it pretrains its base)."""
    config = tiny_config()
    config.model.weights = ""
    validation.validate(config, "train")
    out = capsys.readouterr().out
    assert out.startswith("Warning: config.model.weights is empty")
    assert "sft-tf pretrain" in out and "--config.phase2.unfreeze_blocks=-1" in out
    validation.validate(config, "demo")
    config.phase2.unfreeze_blocks, config.phase2.batchnorm = -1, "train"
    validation.validate(config, "train")
    assert capsys.readouterr().out == ""


def test_an_empty_export_dir_is_said_before_training(capsys):
    """export.dir="" skips the export: a run that ends with no model must say so up front."""
    config = tiny_config(model__weights="", export__dir="")
    config.phase2.unfreeze_blocks, config.phase2.batchnorm = -1, "train"
    validation.validate(config, "train")
    assert capsys.readouterr().out == (
        "Note: config.export.dir is empty, so this run exports no model; `sft-tf export "
        "--workdir=DIR --config.export.dir=saved_models` exports it later\n"
    )
    validation.validate(config, "demo")  # the demo's scratch baseline is not exported on purpose
    validation.validate(tiny_config(model__weights="", export__dir="saved_models"), "audit")
    assert capsys.readouterr().out == ""
