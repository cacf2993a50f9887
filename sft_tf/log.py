"""Progress lines for the user: plain lines on stdout, flushed at once (logs and pipes too)."""

from __future__ import annotations

import sys
import time


def say(message: str) -> None:
    print(message, flush=True)


class Progress:
    """Progress of a slow loop over `total` items: a line redrawn in place on a terminal, else a
    new line every `every` seconds (logs stay short). Silent for work that ends within `delay`
    seconds, so small data prints nothing extra.

    Use as a context manager; call `update(done)` with the items done so far.
    """

    def __init__(
        self, label: str, total: int, unit: str = "images", delay=3.0, every=30.0, stream=None
    ):
        """stream: where the lines go (default stdout; stderr where stdout carries results)."""
        self.label, self.total, self.unit = label, total, unit
        self.delay, self.every = delay, every
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty()
        self.start = time.monotonic()
        self.last = None  # when the last line was printed (None: nothing printed yet)
        self.done = 0
        self.shown = None  # the count the last line printed showed

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        done = self.total if exc[0] is None else self.done
        # The last line again with its count, unless a log already ends with that line.
        if self.last is not None and (self.terminal or self.shown != done):
            self._print(done, final=True)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.start < self.delay:
            return
        gap = 0.2 if self.terminal else self.every
        if self.last is None or now - self.last >= gap:
            self.last = now
            self._print(done)

    def _print(self, done: int, final: bool = False) -> None:
        self.shown = done
        share = done / self.total if self.total else 1.0
        text = (
            f"{self.label}: {done:,}/{self.total:,} {self.unit} ({share:.0%}), "
            f"{time.monotonic() - self.start:.0f} s"
        )
        if self.terminal:
            self.stream.write(f"\r{text}" + ("\n" if final else ""))
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)
