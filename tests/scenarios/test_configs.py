"""Every config in configs/ trains end to end, shrunk to its smoke variant (slow)."""

import pytest

from sft_tf.config import validation
from tests.helpers import CONFIG_FILES, load_config, write_multilabel_csv

# The configs' export settings differ only in the model's name, so one config per backbone
# exports (MobileNetV2, EfficientNetB0, ResNet50); the others stop after training. The export
# itself, multi-label exports included, is tested in tests/serving and tests/scenarios.
EXPORTED = {"tiny", "folder", "resnet50_frozen_head"}


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_every_config_runs_its_smoke_variant(path, image_folders, tmp_path):
    """Each config's own recipe (backbone, optimizer, phases) on local images, shrunk."""
    from sft_tf.commands import train
    from sft_tf.model import catalog

    assert EXPORTED.issubset(p.stem for p in CONFIG_FILES)
    config = load_config(path)
    if config.data.multi_label:  # a labels.csv of images showing one to three colour patches
        csv = write_multilabel_csv(tmp_path / "data", per_split=(16, 8, 8))
        config.data.train = f"csv:{csv}:train"
        config.data.test = f"csv:{csv}:test"
    else:
        config.data.train = f"folder:{image_folders['train']}"
        config.data.test = f"folder:{image_folders['test']}"
    if config.data.validation:
        config.data.validation = "split:0.25"
    config.data.global_batch_size = 8
    config.data.classes = None
    # 4 images a class (3 after the validation hold-out): one step an epoch; the recipe, not
    # the data, is what is smoke-tested.
    # (Multi-label: the 16 training rows; 4 positives a label can be fewer images than a batch.)
    config.data.examples_per_class = None if config.data.multi_label else 4
    config.model.weights = ""  # offline: no ImageNet download
    config.model.image_size = max(32, catalog.get(config.model.backbone).min_size)
    config.phase1.epochs = min(config.phase1.epochs, 1)
    config.phase2.epochs = min(config.phase2.epochs, 1)
    for phase in (config.phase1, config.phase2):
        phase.warmup_epochs = min(phase.warmup_epochs, phase.epochs)
    config.export.dir = str(tmp_path / "saved_models") if path.stem in EXPORTED else ""
    validation.validate(config, "train")
    metrics = train.run(config, tmp_path / "run")
    assert metrics["phase2" if config.phase2.epochs else "phase1"]["test"]
    if path.stem in EXPORTED:
        assert metrics["export"].endswith(f"{config.name}/1")
    else:
        assert "export" not in metrics and not (tmp_path / "saved_models").exists()
