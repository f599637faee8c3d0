"""Telling SARAi's own voice, heard back through the microphone, from the user's.

While SARAi speaks, every block it plays is kept as a reference. Each microphone frame is
matched against the recent reference (FFT cross-correlation finds the echo delay), the best
scaled copy is subtracted, and what remains is what the user said. A purely acoustic echo
with strong reverberation is beyond this simple canceller; a direct loopback or a quiet
speaker is handled well.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from audio.pcm import SAMPLE_RATE, resample


class EchoGate:
    """Keeps what was played recently, with when, and removes it from microphone frames.

    Frames are matched by the time they were captured, not when they are processed, so a
    listener that falls behind (say, while a model loads) still finds the right reference.
    """

    def __init__(self, window_s: float = 1.0, keep_s: float = 6.0, hold_s: float = 0.6) -> None:
        self._window_s = window_s  # how far back an echo may come from
        self._keep_s = keep_s  # how much played audio is kept
        self._hold_s = hold_s  # the echo outlives playback by the device and room latency
        self._blocks: deque[tuple[float, np.ndarray]] = deque()  # (time handed over, audio)
        self._last_played = float("-inf")
        self._lock = threading.Lock()

    def played(self, samples: np.ndarray, sample_rate: int) -> None:
        """Record a block the speaker was just handed (any rate, int16 mono)."""
        block = resample(samples, sample_rate, SAMPLE_RATE).astype(np.float32)
        now = time.perf_counter()
        with self._lock:
            self._blocks.append((now, block))
            while self._blocks and self._blocks[0][0] < now - self._keep_s:
                self._blocks.popleft()
            self._last_played = now + len(block) / SAMPLE_RATE

    def active(self, at: float | None = None) -> bool:
        """True if an echo of playback may be in audio captured at `at` (default: now)."""
        at = time.perf_counter() if at is None else at
        return at - self._last_played < self._hold_s

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()

    def _reference(self, at: float) -> np.ndarray:
        lo = at - self._window_s - self._hold_s
        with self._lock:
            parts = [b for t, b in self._blocks if lo <= t <= at]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def clean(self, frame: np.ndarray, at: float | None = None) -> np.ndarray:
        """The frame (int16, captured at `at`) with the best-matching echo removed."""
        at = time.perf_counter() if at is None else at
        if not self.active(at):
            return frame
        ref = self._reference(at)
        n = len(frame)
        if len(ref) < n:
            return frame
        m = frame.astype(np.float32)
        # Cross-correlation of the frame against every position of the reference.
        size = 1 << int(np.ceil(np.log2(len(ref) + n)))
        corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(m, size)), size)
        corr = corr[: len(ref) - n + 1]
        energy = np.convolve(ref * ref, np.ones(n, np.float32), mode="valid")
        score = corr / np.sqrt(np.maximum(energy, 1e-3))
        k = int(np.argmax(np.abs(score)))
        seg = ref[k : k + n]
        denom = float(seg @ seg)
        if denom <= 1e-3:
            return frame
        gain = float(m @ seg) / denom
        residual = m - gain * seg
        return np.clip(residual, -32768, 32767).astype(np.int16)


def residual_ratio(frame: np.ndarray, cleaned: np.ndarray) -> float:
    """Energy left after echo removal, as a share of the frame's energy (0 = all echo)."""
    e = float(np.sum(frame.astype(np.float64) ** 2))
    return float(np.sum(cleaned.astype(np.float64) ** 2)) / e if e > 0 else 0.0
