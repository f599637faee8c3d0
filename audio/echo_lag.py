"""Where SARAi's echo sits in the microphone against the reference AEC3 is given.

AEC3 learns how late SARAi's voice comes back and cancels it there. The device timestamps
place the reference to within a few milliseconds, not to the sample, and the speaker's and the
microphone's clocks drift apart while SARAi speaks: each time the two streams are lined up
again from the timestamps (an answer going on after a silence, a pause, a device that ran dry)
the echo moves. Through PulseAudio it moved by 10 to 180 samples (0.6-11 ms), and AEC3 then let
most of SARAi's voice through for half a second to eleven seconds, and SARAi paused itself
again and again for its own voice. Fed the recorded streams again with the reference moved
back by what the echo had moved, AEC3 cancelled those same stretches as before.

So the delay is measured from the signals (GCC-PHAT between the raw microphone and the
reference AEC3 was given, over the last half second of SARAi's voice, once a second), and
`recheck()` after the streams are lined up again measures it at the start of the next stretch
of SARAi's voice, on its first 200 ms: where two measurements in a row agree that the echo
moved (and it matches twice as clearly there as where AEC3 learnt it), `microphone` says by
how much, and the canceller moves the reference that much so the echo lands where AEC3 learnt
it. Until then (`unsure`), what the canceller leaves of SARAi's voice
cannot be trusted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from sarai.audio.pcm import SAMPLE_RATE

FRAME = SAMPLE_RATE // 100
VOICED = 64.0**2  # a 10 ms reference frame this loud (mean square) is SARAi speaking
_HEARD = 100.0**2  # …and a microphone this loud hears something


@dataclass(frozen=True)
class LagTiming:
    max_s: float = 0.5  # the longest delay looked for (the devices' latency and the room's)
    track_s: float = 0.5  # the window the delay is measured on while SARAi speaks…
    track_every: int = 100  # …every this many frames with SARAi's voice in them
    track_min_peak: float = 0.3  # …when the correlation's peak is at least this clear
    # A recheck measures on the microphone from one delay after SARAi's voice came again (what
    # came before is the echo of what played before the streams were lined up again)…
    check_s: float = 0.2  # …on this much of it at most…
    check_min_s: float = 0.08  # …and at least
    check_within_s: float = 0.02  # how far the echo may have moved (measured: up to 11 ms)
    check_min_peak: float = 0.1  # …where the correlation's peak is at least this clear
    check_agree: int = 2  # samples two measurements in a row may differ by
    check_clearer: float = 2.0  # the echo moved only where it matches that much better there
    give_up: int = 60  # frames after SARAi's voice came again that a recheck ends unanswered


def gcc_phat(mic: np.ndarray, ref: np.ndarray, lags: range) -> np.ndarray:
    """How well `mic` matches `ref` delayed by each of `lags` (samples): the phase transform's
    cross-correlation, whose peak (0-1) says how clear the match is. `ref` ends where `mic`
    ends and is `lags.stop - 1` samples longer."""
    extra = len(ref) - len(mic)
    size = 1 << int(np.ceil(np.log2(len(ref) + len(mic))))
    spectrum = np.fft.rfft(mic, size) * np.conj(np.fft.rfft(ref, size))
    spectrum /= np.abs(spectrum) + 1e-9
    corr = np.fft.irfft(spectrum, size)
    return corr[(np.arange(lags.start, lags.stop) - extra) % size]


class EchoLag:
    """Feed the frames AEC3 gets, in the order it gets them (`reference`, `microphone`)."""

    def __init__(self, timing: LagTiming = LagTiming()) -> None:
        self.t = timing
        self._max = int(timing.max_s * SAMPLE_RATE)
        keep = self._max + 2 * int(max(timing.track_s, timing.check_s) * SAMPLE_RATE)
        self._ref: deque[np.ndarray] = deque(maxlen=keep // FRAME + 2)
        self._mic: deque[np.ndarray] = deque(maxlen=keep // FRAME + 2)
        self.lag: int | None = None  # samples; None: not measured yet
        self._voiced = 0  # frames with SARAi's voice since the last measurement
        self._checking = False
        self._since: int | None = None  # …microphone frames since SARAi's voice came again
        self._last: int | None = None  # its last measurement
        self._wait = 0  # microphone frames before it may measure

    @property
    def unsure(self) -> bool:
        """SARAi speaks again since the streams were lined up, and the echo was not found yet."""
        return self._checking and self._since is not None

    def recheck(self, wait: int = 0) -> None:
        """The streams were lined up again: find the echo at the start of the next stretch,
        not before `wait` more microphone frames (while the echo may still be straying)."""
        if self.lag is not None:
            self._wait = max(wait, self._wait if self._checking else 0)
            self._checking, self._since, self._last = True, None, None

    def reference(self, frame: np.ndarray, energy: float) -> None:
        """A reference frame AEC3 was given, and its mean square."""
        self._ref.append(frame.astype(np.float32))
        if energy > VOICED:
            self._voiced += 1
            if self._checking and self._since is None:
                self._since = 0

    def microphone(self, frame: np.ndarray) -> int | None:
        """A microphone frame AEC3 was given after the reference frames before it. Returns by
        how many samples the echo moved (positive: it comes later) when a recheck finds it."""
        self._mic.append(frame.astype(np.float32))
        if self._checking:
            if self._wait > 0:
                self._wait -= 1
            elif self._since is not None:
                self._since += 1
            return self._check()
        if self._voiced >= self.t.track_every:
            self._track()
        return None

    def _measure(self, n: int, lags: range) -> np.ndarray | None:
        """The correlation over the last `n` microphone frames."""
        if len(self._mic) < n or len(self._ref) < n + self._max // FRAME + 1:
            return None
        mic = np.concatenate(list(self._mic)[-n:])
        if float(np.mean(mic**2)) < _HEARD:
            return None
        ref = np.concatenate(list(self._ref)[-(n + self._max // FRAME + 1):])
        return gcc_phat(mic, ref[-(len(mic) + lags.stop - 1) :], lags)

    def _track(self) -> None:
        self._voiced = 0
        values = self._measure(int(self.t.track_s * 100), range(0, self._max))
        if values is not None and values.max() >= self.t.track_min_peak:
            self.lag = int(np.argmax(values))

    def _check(self) -> int | None:
        assert self.lag is not None
        if self._since is None:
            return None
        if self._since > self.t.give_up:
            self._checking = False
            return None
        within = int(self.t.check_within_s * SAMPLE_RATE)
        n = min(self._since - -(-self.lag // FRAME), int(self.t.check_s * 100))
        if n < int(self.t.check_min_s * 100):
            return None
        lags = range(max(0, self.lag - within), min(self._max, self.lag + within + 1))
        values = self._measure(n, lags)
        if values is None or values.max() < self.t.check_min_peak:
            self._last = None
            return None
        best = int(np.argmax(values))
        if best in (0, len(values) - 1):
            self._last = None  # a maximum at the edge of where it looks is no peak found
            return None
        here = self.lag - lags.start  # where AEC3 learnt it
        learnt = values[max(0, here - self.t.check_agree) : here + self.t.check_agree + 1]
        if abs(best - here) > self.t.check_agree and values[best] < self.t.check_clearer * max(
                float(learnt.max()), 0.0):
            self._last = None  # no clearer elsewhere
            return None
        lag, last = lags.start + best, self._last
        self._last = lag
        if last is None or abs(lag - last) > self.t.check_agree:
            return None
        self._checking, self._voiced = False, 0
        moved = lag - self.lag
        return moved if abs(moved) > self.t.check_agree else 0  # within its own jitter: stays
