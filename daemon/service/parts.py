"""Supervised parts of the daemon, and the policy that restarts one that failed.

A part that stops on its own (its thread died, it could not start) is not fatal: the daemon
reports the error state and tries again after a wait that doubles with each failure, and
goes back to the short wait once the part has run well for a while.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from sarai.daemon.conversation.voice_loop import VoiceLoop

log = logging.getLogger(__name__)


class Part(Protocol):
    name: str

    def start(self) -> None:
        """Start working; raise if it cannot."""

    def alive(self) -> bool:
        """Whether it is still working."""

    def stop(self, timeout: float) -> None:
        """Stop and release what it holds; must be safe to call after a failure."""


Report = Callable[[bool, str], None]  # (recovered, sentence) for each failure and restart


class Restarter:
    """Keeps one part running: restarts it with exponential backoff when it fails."""

    def __init__(self, part: Part, report: Report, *, backoff_s: float = 1.0,
                 backoff_max_s: float = 60.0, stable_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.part = part
        self._report = report
        self._initial = backoff_s
        self._max = backoff_max_s
        self._stable = stable_s
        self._clock = clock
        self._delay = backoff_s
        self._running = False
        self._started_at = 0.0
        self._retry_at: float | None = None
        self.restarts = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def retry_in_s(self) -> float | None:
        return None if self._retry_at is None else max(0.0, self._retry_at - self._clock())

    def start(self) -> bool:
        """Start the part; on failure a retry is scheduled. True if it is running."""
        try:
            self.part.start()
        except Exception as exc:
            self._failed(f"{self.part.name} could not start: {exc}")
            return False
        self._running = True
        self._retry_at = None
        self._started_at = self._clock()
        return True

    def check(self) -> None:
        """Call regularly: notices a dead part, retries when due, relaxes the backoff."""
        now = self._clock()
        if self._running:
            if not self.part.alive():
                self._running = False
                self._safe_stop()
                self._failed(f"{self.part.name} stopped unexpectedly")
            elif now - self._started_at >= self._stable:
                self._delay = self._initial
            return
        if self._retry_at is not None and now >= self._retry_at:
            self.restarts += 1
            log.info("restarting %s (attempt %d)", self.part.name, self.restarts)
            if self.start():
                self._report(True, f"{self.part.name} restarted")

    def stop(self, timeout: float) -> None:
        self._retry_at = None
        if self._running:
            self._running = False
            self._safe_stop(timeout)

    def _failed(self, what: str) -> None:
        self.failures += 1
        self.last_error = what
        self._retry_at = self._clock() + self._delay
        log.error("%s; retrying in %g s", what, self._delay)
        self._report(False, f"{what}; retrying in {self._delay:g} s")
        self._delay = min(self._delay * 2, self._max)

    def _safe_stop(self, timeout: float = 2.0) -> None:
        try:
            self.part.stop(timeout)
        except Exception as exc:  # it already failed; cleaning up must not fail the daemon
            log.warning("stopping %s: %s", self.part.name, exc)


class VoicePart:
    """The hands-free loop as a part: a fresh VoiceLoop for every (re)start."""

    name = "voice loop"

    def __init__(self, make_loop: Callable[[], VoiceLoop]) -> None:
        self._make_loop = make_loop
        self.loop: VoiceLoop | None = None

    def start(self) -> None:
        loop = self._make_loop()
        # A missing microphone is the loop's own business (it reports and retries); only a
        # loop that cannot run at all is the supervisor's.
        loop.start(wait_for_device=True)
        self.loop = loop

    def alive(self) -> bool:
        return self.loop is not None and not self.loop.wait(0)

    def stop(self, timeout: float) -> None:
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.stop(timeout)
