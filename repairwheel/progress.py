"""A one-line progress indicator on stderr, shown only on a terminal and only for work that
has already taken over a second (short runs and pipelines see nothing)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_DELAY = 1.0  # seconds before anything is shown
_INTERVAL = 0.1  # seconds between redraws


class Progress:
    """Counts units of work (bytes, files) towards ``total``."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.shown = False

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < _DELAY or now - self.drawn_at < _INTERVAL:
            return
        self.drawn_at = now
        self.shown = True
        percent = min(100, 100 * self.done // self.total)
        self.stream.write(f"\r{self.label}: {percent:3d}%")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * (len(self.label) + 6) + "\r")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
