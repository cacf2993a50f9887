"""The recipe pieces: per-block learning rates, L2-SP, zero head, optimizers."""

import keras
import numpy as np
import pytest

from sft_tf.config import validation
from sft_tf.model import backbones, classifier, optim, unfreeze
from tests.helpers import tiny_classifier


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, n)


def _one_step(model, optimizer, loss="sparse_categorical_crossentropy", steps=1):
    model.compile(optimizer, loss)
    x, y = _batch()
    model.fit(x, y, batch_size=16, epochs=steps, verbose=0, shuffle=False)


def _opened(model, k=2):
    base = classifier.get_base(model)
    names = unfreeze.unfreeze_top_blocks(base, "MobileNetV2", k)
    blocks = backbones.block_structure(base, "MobileNetV2").blocks
    return base, [b for b in blocks if b[0] in names]


@pytest.mark.slow
def test_block_rates_scale_each_blocks_step_by_decay():
    model = tiny_classifier(3, seed=0)
    base, blocks = _opened(model)
    start = {v.path: np.array(v) for v in model.trainable_weights}
    optimizer = optim.build_optimizer("sgd", 0.1, momentum=0.0)
    optimizer.set_rate_scales(optim.block_rate_scales(base, blocks, decay=0.5))
    reference = tiny_classifier(3, seed=0)
    _opened(reference)
    _one_step(model, optimizer)
    _one_step(reference, optim.build_optimizer("sgd", 0.1, momentum=0.0))
    moved = {v.path: np.array(v) - start[v.path] for v in model.trainable_weights}
    plain = {v.path: np.array(v) - start[v.path] for v in reference.trainable_weights}
    top = base.get_layer("block_16_project").kernel.path
    lower = base.get_layer("block_15_project").kernel.path
    head = model.get_layer("probabilities").kernel.path
    np.testing.assert_allclose(moved[top], plain[top], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(moved[lower], 0.5 * plain[lower], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(moved[head], plain[head], rtol=1e-4, atol=1e-7)
    assert np.abs(plain[lower]).max() > 0


@pytest.mark.slow
def test_l2sp_large_strength_holds_weights_and_zero_is_plain_finetuning():
    runs = {}
    for strength in (0.0, 500.0, None):
        model = tiny_classifier(3, seed=0)
        base, _ = _opened(model)
        if strength is not None:
            assert optim.apply_l2sp(base.trainable_weights, strength) == (
                len(base.trainable_weights) if strength else 0
            )
        kernel = base.get_layer("block_16_project").kernel
        start = np.array(kernel)
        # lr * 2 * strength = 1: each step pulls the weight all the way back to its start
        # before the task gradient moves it, so it stays one step away while plain SGD drifts.
        _one_step(model, optim.build_optimizer("sgd", 1e-3, momentum=0.0), steps=5)
        runs[strength] = np.array(kernel) - start
    np.testing.assert_array_equal(runs[0.0], runs[None])  # lambda 0: plain fine-tuning
    assert np.abs(runs[500.0]).max() < 0.5 * np.abs(runs[None]).max()


def test_zero_head_starts_uniform():
    from sft_tf.model import classifier

    model = classifier.build_classifier(
        "MobileNetV2", 4, 32, weights="", alpha=0.35, head_init="zeros"
    )
    np.testing.assert_allclose(model.predict(_batch(4)[0], verbose=0), 0.25, rtol=1e-6)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_trains_a_step(name):
    model = tiny_classifier(3, seed=0)
    head = model.get_layer("probabilities").kernel
    start = np.array(head)
    optimizer = optim.build_optimizer(name, 1e-2, weight_decay=1e-4, clipnorm=1.0)
    assert isinstance(optimizer, keras.optimizers.Optimizer)
    _one_step(model, optimizer)
    assert not np.allclose(np.array(head), start)


@pytest.mark.slow
def test_train_runs_the_whole_recipe(tmp_path, image_folders, capsys):
    from sft_tf.commands import train
    from tests.helpers import REPO, load_config

    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    config.data.validation = "split:0.25"
    config.export.dir = ""
    config.model.head_init = "zeros"
    config.phase1.optimizer = "adamw"
    config.phase1.weight_decay = 1e-4
    config.phase1.label_smoothing = 0.1
    config.phase2.optimizer = "sgd"
    config.phase2.nesterov = True
    config.phase2.clipnorm = 1.0
    config.phase2.l2sp = 0.01
    config.phase2.layer_decay = 0.5
    config.phase2.epochs = 2
    config.phase2.early_stopping_patience = 1
    validation.validate(config, "train")
    metrics = train.run(config, tmp_path / "run")
    out = capsys.readouterr().out
    assert "L2-SP 0.01 toward the starting weights" in out
    assert metrics["phase2"]["open_blocks"] == ["block_15", "block_16"]
