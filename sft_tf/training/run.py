"""`Run`: everything one training run's phases need and change, in one place.

The phases (`sft_tf.training.phases`) advance it; the end of the run
(`sft_tf.training.finish`) reads it. It lives apart from both so that neither imports the
other for it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from sft_tf.data.examples import Examples
from sft_tf.model import classifier
from sft_tf.training.checkpoints import RunCheckpoints
from sft_tf.training.inputs import Pipelines
from sft_tf.training.state import RunStart, RunState


@dataclasses.dataclass
class Run:
    """One training run: its config, data, model, checkpoints and the state they advance.

    Attributes:
      state: where the run is, advanced as it trains (through `RunState`'s transitions);
        started: where this process began, a frozen snapshot.
    """

    config: ml_collections.ConfigDict
    workdir: Path
    strategy: tf.distribute.Strategy
    compile_options: dict
    train: Examples
    validation: Examples | None
    test: Examples | None
    pipelines: Pipelines
    model: keras.Model
    checkpoints: RunCheckpoints
    state: RunState
    started: RunStart
    # The model's test-set probabilities from the last test evaluation, and a multi-label
    # model's thresholds they were scored at; None once it trains again (the end of the run
    # reuses them rather than predicting the same things twice).
    test_predictions: np.ndarray | None = None
    test_thresholds: np.ndarray | None = None

    @property
    def base(self) -> keras.Model:
        return classifier.get_base(self.model)

    @property
    def class_names(self) -> list[str]:
        return list(self.train.class_names)
