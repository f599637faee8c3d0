"""Telling SARAi's own voice, heard back through the microphone, from the user's.

While SARAi speaks, every block it plays (with the silences between its sentences) is kept as
a reference. The last quarter second of microphone audio is matched against the recent
reference (FFT cross-correlation finds the echo delay; a single 30 ms frame of voiced speech
matches at many pitch periods, a longer stretch at one), a short filter around that delay is
fitted to the newest frame and its echo estimate subtracted, and what remains is what the
user said. A purely acoustic echo
with strong reverberation is beyond this simple canceller; a direct loopback or a quiet
speaker is handled well.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from sarai.audio.pcm import SAMPLE_RATE, resample


class EchoGate:
    """Keeps what was played recently, with when, and removes it from microphone frames.

    Frames are matched by the time they were captured, not when they are processed, so a
    listener that falls behind (say, while a model loads) still finds the right reference.
    """

    def __init__(self, window_s: float = 1.0, keep_s: float = 6.0, hold_s: float = 0.6,
                 context_s: float = 0.25, taps: int = 5) -> None:
        self._window_s = window_s  # how far back an echo may come from
        self._keep_s = keep_s  # how much played audio is kept
        self._hold_s = hold_s  # the echo outlives playback by the device and room latency
        self._context = int(context_s * SAMPLE_RATE)  # microphone audio used to align
        self._taps = taps
        self._blocks: deque[tuple[float, np.ndarray]] = deque()  # (time handed over, audio)
        self._mic: deque[np.ndarray] = deque()
        self._mic_len = 0
        self._last_played = float("-inf")
        self._lock = threading.Lock()

    def played(self, samples: np.ndarray, sample_rate: int, heard_at: float | None = None) -> None:
        """Record a block the speaker was just handed (any rate, int16 mono), heard from
        `heard_at` on (default: now); silent blocks keep the reference continuous but do not
        make the gate active."""
        block = resample(samples, sample_rate, SAMPLE_RATE).astype(np.float32)
        now = time.perf_counter() if heard_at is None else heard_at
        with self._lock:
            self._blocks.append((now, block))
            while self._blocks and self._blocks[0][0] < now - self._keep_s:
                self._blocks.popleft()
            if samples.any():
                self._last_played = now + len(block) / SAMPLE_RATE

    def active(self, at: float | None = None) -> bool:
        """True if an echo of playback may be in audio captured at `at` (default: now)."""
        at = time.perf_counter() if at is None else at
        return at - self._last_played < self._hold_s

    def _reference(self, at: float) -> np.ndarray:
        lo = at - self._window_s - self._hold_s
        with self._lock:
            parts = [b for t, b in self._blocks if lo <= t <= at]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _remember_mic(self, m: np.ndarray) -> np.ndarray:
        """The recent microphone audio ending with frame `m`."""
        self._mic.append(m)
        self._mic_len += len(m)
        while self._mic_len - len(self._mic[0]) >= self._context:
            self._mic_len -= len(self._mic.popleft())
        return np.concatenate(self._mic)

    def clean(self, frame: np.ndarray, at: float | None = None) -> np.ndarray:
        """The frame (int16, captured at `at`) with the best-matching echo removed."""
        at = time.perf_counter() if at is None else at
        m = frame.astype(np.float32)
        context = self._remember_mic(m)
        if not self.active(at):
            return frame
        n = len(m)
        # Before the first block kept, the speaker was silent: zeros let the recent
        # microphone audio line up with the very start of playback too.
        ref = np.concatenate([np.zeros(len(context), np.float32), self._reference(at)])
        best = m
        best_energy = float(m @ m)
        # Aligning on the recent audio is robust against pitch ambiguity; aligning on the
        # frame alone survives a gap in the microphone stream. The better fit wins.
        for template in (context, m) if len(context) > n else (m,):
            k = _best_lag(ref, template) + len(template) - n
            residual = self._subtract(m, ref, k)
            energy = float(residual @ residual)
            if energy < best_energy:
                best, best_energy = residual, energy
        return np.clip(best, -32768, 32767).astype(np.int16)

    def _subtract(self, m: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
        """`m` less its echo estimate from `ref[k:]`: a few taps around the delay, fitted by
        least squares (the speaker, the room and resampling filter the echo a little, which
        one scaled copy would leave behind)."""
        n, h = len(m), self._taps // 2
        shifts = [d for d in range(-h, h + 1) if k + d >= 0 and k + d + n <= len(ref)]
        if not shifts:
            return m
        basis = np.stack([ref[k + d : k + d + n] for d in shifts], axis=1)
        if float(np.sum(basis * basis)) <= 1e-3:
            return m
        weights, *_ = np.linalg.lstsq(basis, m, rcond=None)
        return m - basis @ weights


def _best_lag(ref: np.ndarray, template: np.ndarray) -> int:
    """Where in `ref` the template matches best (normalised FFT cross-correlation)."""
    size_t = len(template)
    size = 1 << int(np.ceil(np.log2(len(ref) + size_t)))
    corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(template, size)), size)
    corr = corr[: len(ref) - size_t + 1]
    sq = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
    energy = sq[size_t:] - sq[:-size_t]
    return int(np.argmax(corr / np.sqrt(np.maximum(energy, 1e-3))))


def residual_ratio(frame: np.ndarray, cleaned: np.ndarray) -> float:
    """Energy left after echo removal, as a share of the frame's energy (0 = all echo)."""
    e = float(np.sum(frame.astype(np.float64) ** 2))
    return float(np.sum(cleaned.astype(np.float64) ** 2)) / e if e > 0 else 0.0
