"""The end of a train run: the test evaluation after each phase, which the end reuses."""

import types

import numpy as np

from sft_tf.data.examples import Examples
from sft_tf.training import finish, outcome
from sft_tf.training.run import Run
from tests.helpers import tiny_classifier, tiny_config


def _run(test) -> Run:
    model = tiny_classifier(3, seed=1)
    fields = dict.fromkeys(f.name for f in Run.__dataclass_fields__.values())
    rng = np.random.default_rng(2)
    train = Examples(
        ("a", "b", "c"),
        np.arange(6, dtype=np.int32) % 3,
        pixels=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
    )
    pipelines = types.SimpleNamespace(test_ds=None)  # built from `test` when None
    return Run(
        **{
            **fields,
            "config": tiny_config(),
            "model": model,
            "train": train,
            "test": test,
            "pipelines": pipelines,
        }
    )


def test_evaluate_test_scores_the_model_now_and_keeps_its_probabilities():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    test = Examples(("a", "b", "c"), np.arange(9, dtype=np.int32) % 3, pixels=pixels)
    run = _run(test)
    metrics = finish.evaluate_test(run)
    expected = outcome.predict(run.model, run.config, test)
    np.testing.assert_allclose(run.test_predictions, expected, rtol=1e-5, atol=1e-7)
    assert run.test_thresholds is None  # single-label: no thresholds
    scored = outcome.test_metrics(run.model, run.config, test, ["a", "b", "c"])
    assert metrics["examples"] == 9
    assert metrics["accuracy"] == scored["accuracy"]
    assert metrics["confusion_matrix"] == scored["confusion_matrix"]


def test_without_a_test_split_there_is_nothing_to_evaluate():
    run = _run(None)
    assert finish.evaluate_test(run) is None
    assert run.test_predictions is None
