"""The per-stage time summary: nested stages count once, and the stages add up to the wall."""

import time

from sft_tf import timing


def test_nested_stages_count_toward_the_innermost_and_add_up():
    clock = timing.Stages()
    with clock.stage("phase 2"):
        time.sleep(0.05)
        with clock.stage("phase 2 cache"):
            time.sleep(0.1)
        time.sleep(0.05)
    time.sleep(0.02)
    with clock.stage("phase 2"):  # a stage run twice sums
        time.sleep(0.05)
    summary = clock.summary()
    assert list(summary) == ["phase 2", "phase 2 cache", "other", "total"]
    assert 0.14 <= summary["phase 2"] < 0.3
    assert 0.09 <= summary["phase 2 cache"] < 0.2
    assert abs(summary["total"] - sum(v for k, v in summary.items() if k != "total")) < 0.25
    assert clock.line().startswith("Time: phase 2 0.")


def test_the_cli_counts_start_up_from_the_import(monkeypatch):
    monkeypatch.setattr(timing, "_count_start_up", False)
    assert "start-up" not in timing.start().summary()
    monkeypatch.setattr(timing, "_count_start_up", True)
    clock = timing.start()
    assert clock.summary()["start-up"] >= 0
    # A second run in the same process (sft-tf demo) has no start-up of its own.
    assert "start-up" not in timing.start().summary()
    with timing.stage("data"):
        pass
    assert "data" in timing.current().summary()
