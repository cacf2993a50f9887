"""Strategies on this machine's 2 logical CPUs."""

import pytest
import tensorflow as tf

from sft_tf import strategy
from sft_tf.errors import UserError


def test_mirrored_uses_both_logical_cpus(capsys):
    s = strategy.build_strategy("mirrored")
    assert isinstance(s, tf.distribute.MirroredStrategy) and s.num_replicas_in_sync == 2
    assert "2 replica(s)" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["auto", "one_device", "default"])
def test_single_replica_strategies(name):
    assert strategy.build_strategy(name).num_replicas_in_sync == 1


def test_errors(monkeypatch):
    with pytest.raises(UserError, match="not one of"):
        strategy.build_strategy("gpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="needs TF_CONFIG"):
        strategy.build_strategy("multi_worker")
