"""A speaker in memory on a virtual clock, for running the voice loop without sound devices.

Time moves only when the caller says so (`VirtualClock.advance`), so a test that feeds the
microphone frame by frame sees exactly the same thing every run.
"""

from __future__ import annotations

from collections import deque
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
    virtual time: `advance(until)` plays up to then, block by block, returns what came out of
    the speaker meanwhile, and keeps every block that carried sound with the time it was
    heard. `latency_s` is the device's buffer: a block is heard that long after it is pulled,
    and, as on the real speaker, a pause or stop throws away what the buffer holds
    (`on_dropped(at)` is told, as `on_played` is told of every block pulled)."""

    RATE = 16_000
    BLOCK_S = 0.01

    def __init__(self, clock: VirtualClock, latency_s: float = 0.02,
                 on_played: Callable[[np.ndarray, int, float], None] | None = None,
                 rate: int = RATE,
                 on_dropped: Callable[[float], None] | None = None) -> None:
        self._clock = clock
        self.latency_s = latency_s
        self.on_played = on_played
        self.on_dropped = on_dropped
        self.rate = rate
        self.queue = PlaybackQueue(rate)
        self.heard: list[tuple[float, np.ndarray]] = []  # (when heard, samples) with sound
        self._played_until = clock.now()
        self._buffer: deque[tuple[float, np.ndarray | None]] = deque()  # pulled, not heard yet
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
        now = self._clock.now()
        self.queue.pause(now)
        self._drop_buffered(now)

    def resume(self) -> None:
        self.queue.resume()

    def wake(self) -> None:
        """Nothing to wake: a speaker in memory never idles."""

    def stop(self) -> None:
        now = self._clock.now()
        self.queue.stop(now)
        self._drop_buffered(now)

    def _drop_buffered(self, at: float) -> None:
        if self.queue.heard_until <= at:
            return
        while self._buffer and self._buffer[-1][0] >= at:
            self._buffer.pop()
        if self.on_dropped is not None:
            self.on_dropped(at)
        self.queue.unplayed(at)

    def drain(self, timeout: float | None = None) -> None:  # noqa: ARG002
        """Nothing to wait for in virtual time: time moves only through `advance`."""

    def close(self) -> None:
        pass

    def advance(self, until: float) -> np.ndarray:
        """Play up to virtual time `until`; returns what the speaker sounded meanwhile (at
        `rate`: silence while its buffer first fills, or after a pause threw it away)."""
        n = round(self.rate * self.BLOCK_S)
        step = n / self.rate  # a whole number of samples: the device's own clock
        out = []
        while self._played_until + step <= until + 1e-9:
            block = np.zeros(n, np.int16)
            heard_at = self._played_until + self.latency_s
            sound = self.queue.pull(block, heard_at)
            if self.on_played is not None:
                self.on_played(block, self.rate, heard_at)
            self._buffer.append((heard_at, block if sound else None))
            # What the device sounds now: the block pulled `latency_s` ago, if still there.
            now_block = np.zeros(n, np.int16)
            while self._buffer and self._buffer[0][0] < self._played_until + step / 2:
                at, pulled = self._buffer.popleft()
                if pulled is not None:
                    now_block = pulled
                    self.heard.append((at, pulled))
            out.append(now_block)
            self._played_until += step
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def heard_between(self, start: float, end: float = float("inf")) -> np.ndarray:
        """Everything heard from `start` to `end`, concatenated."""
        parts = [b for t, b in self.heard if start <= t < end]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)
