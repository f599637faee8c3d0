"""Simulated rooms: how SARAi's speaker and the user reach the microphone.

A room is a shoebox with absorbing walls (pyroomacoustics' image-source model, its absorption
chosen by Sabine's formula for a reverberation time), a loudspeaker, a microphone and a
talker in it. Its two impulse responses carry SARAi's voice and the user's to the microphone
with the room's reverberation; room noise (pink, at a fixed level) is always there.

`EchoPath`s are what the device-free voice harness puts between its speaker and its
microphone: nothing (headphones), a plain delay and gain, or a room, convolved as a stream,
block by block, exactly as the room would have carried the whole answer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.signal import fftconvolve, lfilter

from sarai.audio.pcm import SAMPLE_RATE


@dataclass(frozen=True)
class RoomSpec:
    name: str
    dims: tuple[float, float, float]  # metres
    sabine_rt60_s: float  # what Sabine's formula is given (the image model ends up longer)
    speaker: tuple[float, float, float]
    mic: tuple[float, float, float]
    user: tuple[float, float, float]
    noise_dbfs: float = -60.0  # room noise at the microphone (RMS)

    @property
    def speaker_distance_m(self) -> float:
        return float(np.linalg.norm(np.subtract(self.speaker, self.mic)))

    @property
    def user_distance_m(self) -> float:
        return float(np.linalg.norm(np.subtract(self.user, self.mic)))


# A small office (RT60 ≈ 0.3 s) with the speaker 0.7 m from the microphone, and a living room
# (RT60 ≈ 0.6 s measured on its impulse response) with the speaker 1 m away; the user sits
# farther off than the speaker in both.
ROOMS = {
    "office": RoomSpec("office", (4.0, 3.5, 2.7), 0.3, (1.8, 1.5, 1.0), (2.5, 1.5, 1.0),
                       (2.6, 3.0, 1.5), noise_dbfs=-60.0),
    "living": RoomSpec("living", (6.0, 5.0, 2.8), 0.46, (2.0, 2.0, 1.0), (3.0, 2.0, 1.0),
                       (3.5, 4.2, 1.2), noise_dbfs=-55.0),
}


@dataclass(frozen=True)
class RoomResponses:
    speaker: np.ndarray  # speaker → microphone impulse response (float64, 16 kHz)
    user: np.ndarray  # user → microphone
    rt60_s: float  # measured on the speaker's response


@functools.lru_cache(maxsize=8)
def impulse_responses(spec: RoomSpec) -> RoomResponses:
    """The room's two impulse responses (image-source model; a few seconds to compute)."""
    import pyroomacoustics as pra  # only the benchmark and the tests simulate rooms

    absorption, max_order = pra.inverse_sabine(spec.sabine_rt60_s, list(spec.dims))
    room = pra.ShoeBox(list(spec.dims), fs=SAMPLE_RATE, materials=pra.Material(absorption),
                       max_order=max_order)
    room.add_source(list(spec.speaker))
    room.add_source(list(spec.user))
    room.add_microphone(list(spec.mic))
    room.compute_rir()
    speaker = np.asarray(room.rir[0][0], np.float64)
    user = np.asarray(room.rir[0][1], np.float64)
    rt60 = float(np.asarray(room.measure_rt60()).ravel()[0])
    return RoomResponses(speaker, user, round(rt60, 2))


# --- levels -----------------------------------------------------------------------------

def active_level_db(x: np.ndarray) -> float:
    """RMS level (dB re full scale int16) over the 10 ms frames that carry sound (within
    30 dB of the loudest), so pauses do not lower a voice's level."""
    n = len(x) // 160 * 160
    if n == 0:
        return float("-inf")
    e = (np.asarray(x[:n], np.float64).reshape(-1, 160) ** 2).mean(axis=1)
    act = e > e.max() * 1e-3
    return float(10 * np.log10(e[act].mean() / 32768.0**2 + 1e-20))


def scaled_to(x: np.ndarray, level_db: float) -> np.ndarray:
    """`x` (float) scaled so its active level is `level_db`."""
    return x * 10 ** ((level_db - active_level_db(x)) / 20)


def echo_gain(response: np.ndarray, voice: np.ndarray, rate: int, level_db: float) -> float:
    """The gain on `response` that brings `voice` (int16 at `rate`) to the microphone at
    `level_db` (active level)."""
    from sarai.audio.stream_resample import StreamResampler

    x = StreamResampler(rate).push(np.concatenate([voice, np.zeros(rate, voice.dtype)]))
    return float(10 ** ((level_db - active_level_db(fftconvolve(x, response))) / 20))


def pink_noise(n: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Pink noise (a 1/f filter over white) at `level_db` RMS."""
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    x = lfilter(b, a, rng.standard_normal(n + 2000))[2000:]
    return x * (32768.0 * 10 ** (level_db / 20) / (x.std() + 1e-12))


# --- echo paths -------------------------------------------------------------------------

class EchoPath(Protocol):
    def hear(self, played: np.ndarray, n: int) -> np.ndarray:
        """What the microphone hears of the speaker (and the room) over the next `n` samples,
        given what the speaker played meanwhile (16 kHz)."""


class _Fifo:
    """Samples that are ready, and zeros until there are enough (the path's initial delay)."""

    def __init__(self, delay: int) -> None:
        self._buf = np.zeros(delay, np.float64)

    def put(self, x: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, x])

    def take(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float64)
        k = min(n, len(self._buf))
        out[:k] = self._buf[:k]
        self._buf = self._buf[k:]
        return out


class Headphones:
    """No way back from the speaker to the microphone."""

    def hear(self, played: np.ndarray, n: int) -> np.ndarray:  # noqa: ARG002
        return np.zeros(n, np.float64)


class DelayLine:
    """The speaker comes back delayed and scaled, as a direct loopback would bring it."""

    def __init__(self, gain: float, delay_s: float) -> None:
        self.gain = gain
        self._fifo = _Fifo(int(round(delay_s * SAMPLE_RATE)))

    def hear(self, played: np.ndarray, n: int) -> np.ndarray:
        self._fifo.put(np.asarray(played, np.float64) * self.gain)
        return self._fifo.take(n)


class StreamingConvolver:
    """Convolution with `h` block by block (overlap-add): the same output as convolving the
    whole stream at once."""

    def __init__(self, h: np.ndarray) -> None:
        self._h = np.asarray(h, np.float64)
        self._tail = np.zeros(len(self._h) - 1, np.float64)

    def push(self, x: np.ndarray) -> np.ndarray:
        m = len(x)
        if m == 0:
            return np.zeros(0, np.float64)
        y = fftconvolve(np.asarray(x, np.float64), self._h)
        y[: len(self._tail)] += self._tail  # what earlier blocks still ring into this one
        self._tail = y[m:].copy()
        return y[:m]


class RoomEcho:
    """The speaker through a room: its impulse response (scaled by `gain`), a further delay
    the devices add beyond what their timestamps say, and the room's noise."""

    def __init__(self, response: np.ndarray, gain: float, *, delay_s: float = 0.0,
                 noise_db: float | None = None, seed: int = 0) -> None:
        self._conv = StreamingConvolver(np.asarray(response, np.float64) * gain)
        self._fifo = _Fifo(int(round(delay_s * SAMPLE_RATE)))
        self._noise_db = noise_db
        self._rng = np.random.default_rng(seed)
        self._noise = np.zeros(0, np.float64)
        self.echo: list[np.ndarray] = []  # the echo alone, frame by frame (for measuring)

    def hear(self, played: np.ndarray, n: int) -> np.ndarray:
        self._fifo.put(self._conv.push(np.asarray(played, np.float64)))
        echo = self._fifo.take(n)
        self.echo.append(echo)
        if self._noise_db is None:
            return echo
        if len(self._noise) < n:
            self._noise = np.concatenate([self._noise,
                                          pink_noise(SAMPLE_RATE * 10, self._noise_db,
                                                     self._rng)])
        noise, self._noise = self._noise[:n], self._noise[n:]
        return echo + noise
