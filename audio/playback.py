"""What a speaker plays, one answer (session) after another, and when each was really heard.

A `PlaybackQueue` holds the audio that answers queued, each through its own
`PlaybackSession`. The output device — PortAudio's callback for the real speaker, a virtual
clock for the in-memory one — pulls blocks from it and says when each block will be heard, so
every session learns when its first sound left the speaker and when its last one did.

`stop()` advances the queue's *generation*: every session opened before it is cut, and audio
it plays afterwards (say, a sentence that was being synthesised at that moment) is dropped
wherever it is in flight.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from sarai.audio.pcm import resample

Notify = Callable[[float], None]  # called with the time (perf_counter clock) something happened
Done = Callable[[float, bool], None]  # called with when a session ended, and if it was cut


class AudioSink(Protocol):
    """Something SARAi speaks into."""

    def play(self, samples: np.ndarray, sample_rate: int, on_heard: Notify | None = None) -> None:
        """Queue int16 mono audio; returns without waiting for it to be heard.
        `on_heard(t)`: called when its first sample is heard."""

    def finish(self) -> None:
        """No more audio will come."""


class Output(Protocol):
    """Where answers are heard: the speaker, a file, or a speaker in memory."""

    stopped_at: float | None  # when the last sound left after a pause or stop

    @property
    def playing(self) -> bool: ...

    def session(self, on_first_audio: Notify | None = None,
                on_done: Done | None = None) -> AudioSink:
        """A sink for one answer, bound to the current generation."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def wake(self) -> None:
        """Audio is likely soon (the user started talking): a device that idles gets ready.
        Returns at once."""

    def stop(self) -> None:
        """Drop everything queued; audio of sessions opened before is dropped from now on."""

    def drain(self, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


class PlaybackSession:
    """One answer's audio on a speaker. `on_first_audio(t)` when its first sound is heard,
    `on_done(t, cut)` once it has finished and everything it played was heard, or it was
    cut (stopped, or its device went away)."""

    def __init__(self, queue: PlaybackQueue, generation: int,
                 on_first_audio: Notify | None = None, on_done: Done | None = None) -> None:
        self._queue = queue
        self.generation = generation
        self._on_first_audio = on_first_audio
        self._on_done = on_done
        self.pending = 0  # chunks queued and not yet fully heard
        self.finished = False
        self.cut = False  # stopped before everything was heard
        self.first_audio_at: float | None = None
        self.done_at: float | None = None
        self._done = threading.Event()

    def play(self, samples: np.ndarray, sample_rate: int, on_heard: Notify | None = None) -> None:
        self._queue.push(self, samples, sample_rate, on_heard)

    def finish(self) -> None:
        self._queue.finish(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done; True if it is."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # Called by the queue, under its lock.
    def _first(self, at: float) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = at
            if self._on_first_audio is not None:
                self._on_first_audio(at)

    def _finish_at(self, at: float) -> None:
        self._queue._open.discard(self)
        if not self._done.is_set():
            self.done_at = at
            self._done.set()
            if self._on_done is not None:
                self._on_done(at, self.cut)


class PlaybackQueue:
    """Sessions' audio in order at one sample rate; thread-safe. See the module comment."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.generation = 0
        self._lock = threading.Lock()
        self._chunks: deque[tuple[PlaybackSession, np.ndarray, Notify | None]] = deque()
        self._offset = 0  # samples of the first chunk already handed to the device
        self._paused = False
        self._heard_until = 0.0  # when the last sound handed over will have been heard
        self.stopped_at: float | None = None  # when the last sound left after pause/stop
        self._open: set[PlaybackSession] = set()  # sessions of this generation not yet done
        self.on_push: Callable[[], None] | None = None  # told whenever audio is queued

    def session(self, on_first_audio: Notify | None = None,
                on_done: Done | None = None) -> PlaybackSession:
        with self._lock:
            session = PlaybackSession(self, self.generation, on_first_audio, on_done)
            self._open.add(session)
            return session

    @property
    def playing(self) -> bool:
        return bool(self._chunks)

    @property
    def paused(self) -> bool:
        return self._paused

    def push(self, session: PlaybackSession, samples: np.ndarray, sample_rate: int,
             on_heard: Notify | None = None) -> None:
        data = resample(samples, sample_rate, self.rate).astype(np.int16, copy=False)
        with self._lock:
            if session.generation != self.generation or session.finished or not len(data):
                return  # an older generation's audio: dropped (barge-in, stop)
            session.pending += 1
            self._chunks.append((session, data, on_heard))
        if self.on_push is not None:
            self.on_push()

    def finish(self, session: PlaybackSession, at: float | None = None) -> None:
        with self._lock:
            session.finished = True
            if session.generation != self.generation:
                session.cut = True
                session._finish_at(self._now(at))
            elif session.pending == 0:
                session._finish_at(max(self._now(at), self._heard_until))

    def pause(self, at: float) -> None:
        """Go silent from the next block, keeping the rest for `resume()`."""
        with self._lock:
            if not self._paused:
                self._paused = True
                self.stopped_at = max(at, self._heard_until) if self._chunks else at

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    @property
    def heard_until(self) -> float:
        """When the last sound handed to the device will have been heard."""
        return self._heard_until

    def unplayed(self, at: float) -> None:
        """The device threw away what it held that was not heard by `at` (a pause or stop
        that must be heard at once): the sound ends at `at`, and a paused answer gets back
        what of its current chunk was thrown away, so `resume()` says it after all. (What
        was thrown away of an earlier chunk, a sentence's last few milliseconds, is lost.)"""
        with self._lock:
            left = self._heard_until - at
            if left <= 0:
                return
            if self._chunks and self._offset > 1:
                # Never back to 0: the chunk's first sound was announced already.
                self._offset -= min(int(round(left * self.rate)), self._offset - 1)
            self._heard_until = at
            if self.stopped_at is not None and self.stopped_at > at:
                self.stopped_at = at

    def stop(self, at: float) -> None:
        """Drop everything queued and start a new generation (barge-in)."""
        with self._lock:
            if not self._paused:
                self.stopped_at = max(at, self._heard_until) if self._chunks else at
            self._paused = False
            self.generation += 1
            self._chunks.clear()
            self._offset = 0
            # Every session of the old generation ends now, cut, whether or not its answer
            # is still being written: nothing more of it will be heard.
            cut, self._open = self._open, set()
            for s in cut:
                s.pending = 0
                s.cut = True
                s._finish_at(at)

    def pull(self, out: np.ndarray, heard_at: float) -> int:
        """Fill `out` (int16, one block) with what is next; `heard_at`: when the block's first
        sample will be heard. Returns how many samples of it are sound."""
        n = 0
        frames = len(out)
        with self._lock:
            if not self._paused:
                while n < frames and self._chunks:
                    session, chunk, on_heard = self._chunks[0]
                    if self._offset == 0:
                        session._first(heard_at + n / self.rate)
                        if on_heard is not None:
                            on_heard(heard_at + n / self.rate)
                    take = min(frames - n, len(chunk) - self._offset)
                    out[n : n + take] = chunk[self._offset : self._offset + take]
                    n += take
                    self._offset += take
                    if self._offset >= len(chunk):
                        self._chunks.popleft()
                        self._offset = 0
                        session.pending -= 1
                        if session.pending == 0 and session.finished:
                            session._finish_at(heard_at + n / self.rate)
            if n:
                self._heard_until = heard_at + n / self.rate
        out[n:] = 0
        return n

    @staticmethod
    def _now(at: float | None) -> float:
        import time

        return time.perf_counter() if at is None else at


class HeldSink:
    """Holds audio back until `release()`, then passes it on; `discard()` drops it.

    Used for speculative turns: work starts at a short pause, but nothing is heard unless the
    pause turns out to be the end of the turn. The sink it passes audio to is attached when
    the work starts (`attach`), which may be before or after the decision. `on_first` is
    called when the first piece arrives (on the thread that plays it).
    """

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self._on_first = on_first  # called once, when the first piece of audio arrives
        self._sink: AudioSink | None = None
        self._held: list[tuple[np.ndarray, int, Notify | None]] = []
        self._lock = threading.Lock()
        self._released = False
        self._discarded = False
        self._finished = False

    def attach(self, sink: AudioSink) -> None:
        with self._lock:
            self._sink = sink
            flush = self._released or self._discarded
        if flush:
            self._flush()

    def play(self, samples: np.ndarray, sample_rate: int, on_heard: Notify | None = None) -> None:
        with self._lock:
            if self._discarded:
                return
            first, self._on_first = self._on_first, None
            if not self._released or self._sink is None:
                self._held.append((samples, sample_rate, on_heard))
                sink = None
            else:
                sink = self._sink
        if sink is not None:
            sink.play(samples, sample_rate, on_heard)
        if first is not None:
            first()

    @property
    def waiting(self) -> int:
        """How many pieces of audio are held back."""
        with self._lock:
            return len(self._held)

    def finish(self) -> None:
        with self._lock:
            self._finished = True
        self._flush()

    def release(self) -> None:
        with self._lock:
            if self._discarded:
                return
            self._released = True
        self._flush()

    def discard(self) -> None:
        with self._lock:
            self._held.clear()
            self._discarded = True
        self._flush()

    def _flush(self) -> None:
        """Pass on what the decision allows, once there is somewhere to pass it."""
        with self._lock:
            sink = self._sink
            if sink is None or not (self._released or self._discarded):
                return
            held, self._held = self._held, []
            finish = self._finished or self._discarded
        for samples, rate, on_heard in held:
            sink.play(samples, rate, on_heard)
        if finish:
            sink.finish()
