"""Where a run's wall time goes: named stages, summed per name, reported at the end.

`stage(name)` times a block. Stages nest, and time counts toward the innermost one only; time in
no stage is "other", so the stages of a run add up to its wall time (with "start-up" for the
time from the process start to the run, imports included, in the CLI). `sft-tf train` prints
the summary and keeps it in metrics.json under "timing".
"""

from __future__ import annotations

import contextlib
import time

# The process's start, as near as Python sees it: when sft_tf was first imported.
PROCESS_START = time.perf_counter()


class Stages:
    """Exclusive seconds per stage name, in the order the stages first ran."""

    def __init__(self, since: float | None = None):
        self.seconds: dict[str, float] = {}
        self._stack: list[str] = []
        self._mark = time.perf_counter()
        if since is not None:
            self.seconds["start-up"] = self._mark - since

    def _charge(self) -> None:
        now = time.perf_counter()
        name = self._stack[-1] if self._stack else "other"
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._mark
        self._mark = now

    @contextlib.contextmanager
    def stage(self, name: str):
        self._charge()
        self._stack.append(name)
        self.seconds.setdefault(name, 0.0)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def summary(self) -> dict[str, float]:
        """{stage: seconds} rounded to 0.1 s, in the order the stages ran, then "other" and
        "total"."""
        self._charge()
        out = {name: round(s, 1) for name, s in self.seconds.items() if name != "other"}
        out["other"] = round(self.seconds.get("other", 0.0), 1)
        out["total"] = round(sum(self.seconds.values()), 1)
        return out

    def line(self) -> str:
        parts = [f"{name} {s:.1f} s" for name, s in self.summary().items() if name != "total"]
        return f"Time: {', '.join(parts)}; total {self.summary()['total']:.1f} s"


_current = Stages()
_count_start_up = False


def count_start_up() -> None:
    """Called by the CLI: its runs count the process's start-up (imports) as a stage."""
    global _count_start_up
    _count_start_up = True


def start() -> Stages:
    """Starts a new record for this run: the CLI's first run counts from the process start
    (later runs of one process, as in `sft-tf demo`, from their own start)."""
    global _current, _count_start_up
    _current = Stages(PROCESS_START if _count_start_up else None)
    _count_start_up = False
    return _current


def stage(name: str):
    """Times a block as stage `name` of the current run."""
    return _current.stage(name)


def current() -> Stages:
    return _current
