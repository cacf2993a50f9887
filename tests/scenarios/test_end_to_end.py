"""pretrain -> train (both phases, 2 replicas) -> export -> reload without sft_tf, on real files."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sft_tf.commands import pretrain, train
from sft_tf.config import validation
from sft_tf.data import decode
from sft_tf.data import sources as sources_lib
from sft_tf.training import trained
from sft_tf.training.layout import BACKBONE_FILE
from tests.helpers import REPO, load_config


@pytest.mark.slow  # the whole source -> target journey under Mirrored: ~65 s
def test_pretrain_then_finetune_under_mirrored_and_serve(tmp_path, image_folders, fashion_dir):
    config = load_config(REPO / "configs" / "tiny.py")
    config.runtime.strategy = "mirrored"
    config.export.dir = str(tmp_path / "saved_models")
    # Source task: 4 classes of the IDX set; target: the image folders (a different task).
    config.pretrain.train = f"fashion_mnist:train:{fashion_dir}"
    config.pretrain.test = f"fashion_mnist:test:{fashion_dir}"
    config.pretrain.classes = "0,1,2,3"
    validation.validate(config, "pretrain")
    info = pretrain.pretrain(config, tmp_path / "source")
    weights = tmp_path / "source" / BACKBONE_FILE
    assert weights.is_file() and info["source_classes"] == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
    ]
    assert 0.0 <= info["source_test_accuracy"] <= 1.0
    # A rerun with the same config reuses the backbone instead of training again.
    stamp = weights.stat().st_mtime_ns
    pretrain.pretrain(config, tmp_path / "source")
    assert weights.stat().st_mtime_ns == stamp

    config.model.weights = str(weights)
    config.data.train = f"folder:{image_folders['train']}"
    config.data.test = f"folder:{image_folders['test']}"
    config.phase2.batchnorm = "train"
    validation.validate(config, "train")
    workdir = tmp_path / "run"
    metrics = train.run(config, workdir)

    assert metrics["classes"] == ["cat", "dog", "fox"]
    for phase in ("phase1", "phase2"):
        assert 0.0 <= metrics[phase]["test"]["accuracy"] <= 1.0
    assert metrics["phase2"]["open_blocks"] == ["block_15", "block_16"]
    history = json.loads((workdir / "history.json").read_text())
    assert len(history["loss"]) == config.phase1.epochs + config.phase2.epochs
    assert json.loads((workdir / "config.json").read_text())["model"]["weights"] == str(weights)
    assert (workdir / "logs").is_dir()
    saved = json.loads((workdir / "metrics.json").read_text())
    assert saved["export"] == metrics["export"]

    # The export, in a process that never imports sft_tf, agrees with the restored Keras model.
    _, keras_model, _ = trained.load_trained(workdir)
    test = sources_lib.load_examples(config.data.test)
    files = [str(p) for p in test.paths[::3]]
    pixels = np.stack([decode.decode_image(Path(f).read_bytes(), 32).numpy() for f in files])
    expected = keras_model.predict(pixels, verbose=0)
    script = textwrap.dedent(
        """
        import json, sys
        import tensorflow as tf
        serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
        files = sys.argv[2:]
        out = serve(image_bytes=tf.constant([open(f, "rb").read() for f in files]))
        print(json.dumps({"p": out["probabilities"].numpy().tolist(),
                          "c": [r[0].decode() for r in out["classes"].numpy()]}))
        assert "sft_tf" not in sys.modules
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, metrics["export"], *files],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["p"], expected, atol=1e-4)
    assert out["c"] == [metrics["classes"][i] for i in expected.argmax(-1)]
