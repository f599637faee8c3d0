"""A speaker in memory on a virtual clock, for running the voice loop without sound devices.

Time moves only when the caller says so (`VirtualClock.advance`), so a test that feeds the
microphone frame by frame sees exactly the same thing every run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sarai.audio.playback import Done, Notify, PlaybackQueue, PlaybackSession


class VirtualClock:
    """A clock that stands still until advanced; `now()` in seconds."""

    def __init__(self, start: float = 1000.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        self._t += seconds
        return self._t


class MemorySpeaker:
    """The speaker's behaviour (sessions, generations, pause/resume/stop) with playback in
    virtual time: `advance(seconds)` plays that much, block by block, and keeps every block
    that carried sound with the time it was heard. `latency_s` is how long after a block is
    pulled it is heard, as a device buffer would delay it."""

    RATE = 16_000
    BLOCK_S = 0.01

    def __init__(self, clock: VirtualClock, latency_s: float = 0.02,
                 on_played: Callable[[np.ndarray, int, float], None] | None = None,
                 rate: int = RATE) -> None:
        self._clock = clock
        self.latency_s = latency_s
        self.on_played = on_played
        self.rate = rate
        self.queue = PlaybackQueue(rate)
        self.heard: list[tuple[float, np.ndarray]] = []  # (when heard, samples) with sound
        self._played_until = clock.now()
        self.alive = True

    def session(self, on_first_audio: Notify | None = None,
                on_done: Done | None = None) -> PlaybackSession:
        return self.queue.session(on_first_audio, on_done)

    @property
    def playing(self) -> bool:
        return self.queue.playing

    @property
    def stopped_at(self) -> float | None:
        return self.queue.stopped_at

    def pause(self) -> None:
        self.queue.pause(self._clock.now())

    def resume(self) -> None:
        self.queue.resume()

    def stop(self) -> None:
        self.queue.stop(self._clock.now())

    def drain(self, timeout: float | None = None) -> None:  # noqa: ARG002
        """Nothing to wait for in virtual time: time moves only through `advance`."""

    def close(self) -> None:
        pass

    def advance(self, until: float) -> np.ndarray:
        """Play up to virtual time `until`; returns what was played meanwhile (at `rate`)."""
        n = round(self.rate * self.BLOCK_S)
        step = n / self.rate  # a whole number of samples: the device's own clock
        out = []
        while self._played_until + step <= until + 1e-9:
            block = np.zeros(n, np.int16)
            heard_at = self._played_until + self.latency_s
            if self.queue.pull(block, heard_at):
                self.heard.append((heard_at, block.copy()))
            if self.on_played is not None:
                self.on_played(block, self.rate, heard_at)
            out.append(block)
            self._played_until += step
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def heard_between(self, start: float, end: float = float("inf")) -> np.ndarray:
        """Everything heard from `start` to `end`, concatenated."""
        parts = [b for t, b in self.heard if start <= t < end]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)
