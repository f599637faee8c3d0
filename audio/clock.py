"""Where the voice loop reads the time: the real monotonic clock, or a virtual one in tests.

Every time the voice loop compares (capture times, playback times, stage timestamps) is on
this one clock, `time.perf_counter` in production.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""


class MonotonicClock:
    """The real clock (`time.perf_counter`)."""

    def now(self) -> float:
        return time.perf_counter()


MONOTONIC = MonotonicClock()
