"""sft_tf/commands/pretrain.py: a backbone already trained with this config is reused, not
trained again; any other config trains anew, and its bad input is refused before a file is
written. (A real pretraining, short: marked slow; with a fine-tune after it:
tests/scenarios/test_end_to_end.py.)"""

import json

import numpy as np
import pytest

from sft_tf.commands import pretrain
from sft_tf.config import files as config_files
from sft_tf.errors import UserError
from sft_tf.model import classifier
from sft_tf.model import weights as weights_lib
from sft_tf.training.layout import BACKBONE_FILE
from tests.helpers import make_image_folder, snapshot, tiny_config, tiny_model


def _config(source, **changes):
    config = tiny_config(runtime__strategy="one_device", **changes)
    config.pretrain.train = f"folder:{source}"
    return config


def _saved_backbone(config, workdir) -> dict:
    """A backbone saved as `pretrain` saves it, with this config's digest in its sidecar."""
    key = config_files.digest(
        config.model, config.pretrain, config.data.global_batch_size, config.seed
    )
    info = {"digest": key, "source_test_accuracy": 0.75, "source_classes": ["a", "b"]}
    workdir.mkdir(parents=True)
    base = classifier.get_base(tiny_model(2))
    weights_lib.save_backbone_weights(base, workdir / BACKBONE_FILE, info)
    return info


def test_a_backbone_trained_with_this_config_is_reused(tmp_path, capsys):
    config = _config(tmp_path / "no_source_needed")
    info = _saved_backbone(config, tmp_path / "source")
    before = snapshot(tmp_path / "source")
    assert pretrain.pretrain(config, tmp_path / "source") == info
    assert capsys.readouterr().out == (
        f"Pretrained backbone already in {tmp_path / 'source' / BACKBONE_FILE} (source accuracy "
        "0.75); reusing it\n"
    )
    assert snapshot(tmp_path / "source") == before  # not even a lock file


def test_another_config_trains_anew_and_its_bad_input_writes_nothing(tmp_path):
    """pretrain.epochs changed: the saved backbone no longer applies, so the source data is
    read, and 6 images cannot fill a batch of 8: refused with the saved files untouched."""
    source = make_image_folder(tmp_path / "images", per_class=2)
    config = _config(source)
    _saved_backbone(config, tmp_path / "source")
    before = snapshot(tmp_path / "source")
    config.pretrain.epochs = 2
    with pytest.raises(UserError) as raised:
        pretrain.pretrain(config, tmp_path / "source")
    assert str(raised.value) == (
        "config.data.global_batch_size=8 is larger than config.pretrain.train (6 images after "
        "sampling and hold-out); lower it to <= 6 or add images"
    )
    assert snapshot(tmp_path / "source") == before
    with pytest.raises(UserError):
        pretrain.pretrain(config, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


@pytest.mark.slow  # one epoch of source training and BatchNorm re-estimation: ~15 s
def test_pretraining_saves_a_backbone_train_can_start_from(tmp_path, capsys):
    source = make_image_folder(tmp_path / "images", per_class=8)
    test = make_image_folder(tmp_path / "test", per_class=3, seed=1)
    config = _config(source, data__on_leakage="warn")
    config.pretrain.test = f"folder:{test}"
    info = pretrain.pretrain(config, tmp_path / "source")
    weights = tmp_path / "source" / BACKBONE_FILE
    assert json.loads(weights_lib.sidecar_path(weights).read_text()) == info
    assert info["source_classes"] == ["cat", "dog", "fox"] and info["image_size"] == 32
    assert (info["backbone"], info["options"]) == ("MobileNetV2", {"alpha": 0.35})
    assert 0 <= info["source_test_accuracy"] <= 1
    assert 0 <= info["source_test_accuracy_before_bn_recalibration"] <= 1
    out = capsys.readouterr().out
    assert "with training-time BatchNorm statistics, " in out
    # recalibration_batches=4 (tiny.py), but 24 images make 3 batches of 8.
    assert "after re-estimating them on 3 batches" in out
    assert json.loads((tmp_path / "source" / "config.json").read_text())["pretrain"]["epochs"] == 1
    # The saved base loads into target classifiers (another head): two builds, one base.
    kernels = [
        classifier.get_base(
            classifier.build_classifier("MobileNetV2", 5, 32, weights=str(weights), alpha=0.35)
        )
        .get_layer("Conv1")
        .kernel.numpy()
        for _ in range(2)
    ]
    np.testing.assert_array_equal(*kernels)  # random init would differ between builds
