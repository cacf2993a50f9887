"""`Run`: what a training run's phases share, and what it derives from it."""

import numpy as np

from sft_tf.data.examples import Examples
from sft_tf.model import classifier
from sft_tf.training.run import Run
from tests.helpers import tiny_classifier


def _run(model, train) -> Run:
    """A Run with only what these tests read; the rest belongs to a real train run."""
    fields = dict.fromkeys(f.name for f in Run.__dataclass_fields__.values())
    return Run(**{**fields, "model": model, "train": train})


def test_base_and_class_names_come_from_the_model_and_the_training_split():
    model = tiny_classifier(2)
    train = Examples(("cat", "dog"), np.array([0, 1, 1], np.int32), pixels=np.zeros((3, 4, 4, 3)))
    run = _run(model, train)
    assert run.base is classifier.get_base(model)
    assert run.class_names == ["cat", "dog"]
    # The test predictions start empty: nothing is reused before a test evaluation.
    assert run.test_predictions is None and run.test_thresholds is None
