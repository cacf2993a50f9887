"""sft_tf/commands/demo.py: the offline demo on a small Fashion-MNIST-shaped set. It pretrains,
fine-tunes, trains the scratch baseline, exports, prints the accuracy table and predictions,
and writes demo.json; run again it reuses every part and gives the same table.

`demo.run` is the module's only public function and its job is the whole journey, so this is
one short real run (slow); its parts are tested in tests/commands/test_pretrain.py and
test_train.py, the CLI's argument checks in tests/commands/test_usage.py."""

import json
from pathlib import Path

import pytest

from sft_tf.commands import demo
from tests.helpers import REPO, load_config

ROWS = (
    "from scratch (same labels, same epochs)",
    "fine-tuned, phase 1 (head only)",
    "fine-tuned, phase 2 (top blocks open)",
)


@pytest.mark.slow  # pretrain + fine-tune + scratch baseline + export, then the rerun: ~75 s
def test_the_demo_writes_its_table_and_a_rerun_reuses_everything(tmp_path, fashion_dir, capsys):
    config = load_config(REPO / "configs" / "fashion_mnist.py")
    for split in ("train", "test"):
        config.data[split] = config.pretrain[split] = f"fashion_mnist:{split}:{fashion_dir}"
    config.data.examples_per_class = 8
    config.data.global_batch_size = 16
    config.data.augment = ""
    config.data.cache_dir = str(tmp_path / "cache")
    config.pretrain.epochs = config.phase1.epochs = config.phase2.epochs = 1
    config.phase2.warmup_epochs = 0.0
    config.phase2.unfreeze_blocks = 2
    config.export.dir = str(tmp_path / "saved_models")
    workdir = tmp_path / "demo"

    summary = demo.run(config, workdir)

    assert json.loads((workdir / "demo.json").read_text()) == summary
    assert set(summary) == {*ROWS, "export"}
    for row in ROWS:
        assert 0.0 <= summary[row] <= 1.0, row
    assert summary["export"] == str(tmp_path / "saved_models" / "fashion_mnist" / "1")
    assert (Path(summary["export"]) / "saved_model.pb").is_file()
    assert not (tmp_path / "saved_models" / "fashion_mnist_scratch").exists()  # no export
    images = sorted(p.name for p in (workdir / "images").iterdir())
    # Named after the true class, as a file name can hold it ("Ankle boot" -> "Ankle_boot").
    targets = [c.replace("/", "-").replace(" ", "_") for c in config.data.classes.split(",")]
    assert len(images) == 6
    assert all(name.split("_", 1)[1].removesuffix(".png") in targets for name in images)
    out = capsys.readouterr().out
    for row in ROWS:
        assert f"  {row:<42} {summary[row]:.4f}" in out
    assert f"Predictions of {summary['export']} on test images (file name = true class):" in out
    for name in images:
        assert f"  {name:<28} " in out

    again = demo.run(config, workdir)
    out = capsys.readouterr().out
    assert again == summary
    assert "Pretrained backbone already in" in out and "reusing it" in out
    assert out.count("holds a complete run") == 2  # the fine-tuned run and the baseline
    assert not (tmp_path / "saved_models" / "fashion_mnist" / "2").exists()
