"""The real trainer with every augmentation, class weighting, calibration and export (slow)."""

import pytest

from sft_tf.commands import train
from sft_tf.config import validation
from sft_tf.serving import export
from tests.helpers import REPO, load_config


@pytest.mark.slow
def test_train_with_every_new_option(tmp_path, image_folders, capsys):
    """The real trainer with crop + mixup + cutmix, balanced weights, calibration, export."""
    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    config.data.validation = "split:0.25"
    config.data.test = f"folder:{image_folders['test']}"
    config.data.augment = "crop,flip,mixup,cutmix"
    config.data.class_weighting = "balanced"
    config.export.calibrate = True
    config.export.dir = str(tmp_path / "saved_models")
    validation.validate(config, "train")
    metrics = train.run(config, tmp_path / "run")
    out = capsys.readouterr().out
    assert "Class weights (balanced): cat" in out
    calibration = metrics["calibration"]
    assert 0.05 <= calibration["temperature"] <= 20
    assert calibration["validation_nll_after"] <= calibration["validation_nll_before"] + 1e-4
    manifest = export.read_manifest(metrics["export"])
    assert manifest["temperature"] == calibration["temperature"]
