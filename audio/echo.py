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
    """Keeps what was played recently and removes it from microphone frames."""

    def __init__(self, window_s: float = 1.5, hold_s: float = 0.6) -> None:
        self._max = int(window_s * SAMPLE_RATE)
        self._blocks: deque[np.ndarray] = deque()
        self._size = 0
        self._hold_s = hold_s  # the echo outlives playback by the device and room latency
        self._last_played = 0.0
        self._lock = threading.Lock()

    def played(self, samples: np.ndarray, sample_rate: int) -> None:
        """Record a block the speaker just played (any rate, int16 mono)."""
        block = resample(samples, sample_rate, SAMPLE_RATE).astype(np.float32)
        with self._lock:
            self._blocks.append(block)
            self._size += len(block)
            while self._size - len(self._blocks[0]) >= self._max:
                self._size -= len(self._blocks.popleft())
            self._last_played = time.monotonic()

    @property
    def active(self) -> bool:
        """True while an echo of recent playback may still reach the microphone."""
        return time.monotonic() - self._last_played < self._hold_s

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._size = 0

    def _reference(self) -> np.ndarray:
        with self._lock:
            if not self._blocks:
                return np.zeros(0, np.float32)
            return np.concatenate(self._blocks)[-self._max :]

    def clean(self, frame: np.ndarray) -> np.ndarray:
        """The frame (int16) with the best-matching echo removed."""
        if not self.active:
            return frame
        ref = self._reference()
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
