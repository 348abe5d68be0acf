"""The wall-clock time of each stage of a command (``--json`` ``timings``, ``-v`` logs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)

Timings = tuple[tuple[str, float], ...]
"""(stage, wall-clock seconds rounded to the millisecond), in the order the stages ran."""


class StageClock:
    """Times stages that run one after another, each logged (debug) as it ends."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """End ``stage`` now: it took the time since the clock started or the last stage."""
        now = time.perf_counter()
        self.stages[stage] = round(now - self._last, 3)
        self._last = now
        log.debug("%s took %.3f s", stage, self.stages[stage])

    def take(self, timings: Iterable[tuple[str, float]]) -> None:
        """Count stages another clock timed (and logged) since this one's last lap as its own,
        and start the next stage now."""
        self.stages.update(timings)
        self._last = time.perf_counter()

    @property
    def timings(self) -> Timings:
        return tuple(self.stages.items())
