"""Resampling a stream block by block, as if it had been resampled in one piece.

Resampling each block on its own leaves a filter transient at every block edge: a click
every 20 ms that was never played. The echo canceller's reference must be the very signal the
speaker played, so the stream is resampled continuously: every output sample comes out as soon
as the input its filter reaches has arrived (about a millisecond later), the same as one call
to resample_poly on the whole stream would give it.
"""

from __future__ import annotations

from math import ceil, gcd

import numpy as np
from scipy.signal import firwin, resample_poly

from sarai.audio.pcm import SAMPLE_RATE


class StreamResampler:
    """`push()` audio at `src_rate`; it returns what is ready at `dst_rate` (float32)."""

    def __init__(self, src_rate: int, dst_rate: int = SAMPLE_RATE) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {src_rate} → {dst_rate}")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        g = gcd(src_rate, dst_rate)
        self._up, self._down = dst_rate // g, src_rate // g
        # resample_poly's own anti-aliasing filter, designed once instead of on every call.
        rate = max(self._up, self._down)
        self._filter = None if self.identity else firwin(
            2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(np.float32)
        # How far (in input samples) the filter reaches either side of an output sample.
        self._reach = ceil(10 * rate / self._up) + 1
        # Input kept, from `_start` (a multiple of `_down`, so its first output sample falls
        # exactly on an input sample), preceded by silence at the start of the stream.
        self._buf = np.zeros(self._down * ceil(self._reach / self._down), np.float32)
        self._start = -len(self._buf)
        self._next = 0  # the next output sample to give out

    @property
    def identity(self) -> bool:
        return self._up == self._down

    @property
    def lag_s(self) -> float:
        """How much input must follow a sample before it comes out."""
        return 0.0 if self.identity else self._reach / self.src_rate

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = samples.astype(np.float32, copy=False)
        if self.identity:
            return x.copy()
        self._buf = np.concatenate([self._buf, x])
        end = self._start + len(self._buf)  # input samples received so far
        # The last output whose filter reach lies within what has arrived.
        last = (end - 1 - self._reach) * self._up // self._down
        if last < self._next:
            return np.zeros(0, np.float32)
        y = resample_poly(self._buf, self._up, self._down, window=self._filter)
        first = self._start * self._up // self._down  # the window's first output sample
        out = y[self._next - first : last + 1 - first].astype(np.float32)
        self._next = last + 1
        # Keep the input the next outputs still reach back to, from a multiple of `_down`.
        keep = (self._next * self._down // self._up - self._reach - 1) // self._down * self._down
        if keep > self._start:
            self._buf = self._buf[keep - self._start :]
            self._start = keep
        return out
