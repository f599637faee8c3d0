"""Resampling a stream block by block, as if it had been resampled in one piece.

Resampling each block on its own leaves a filter transient at every block edge: a click
every 20 ms that was never played. The echo canceller's reference must be the very signal the
speaker played, so the stream is resampled in chunks that each see a little of the audio
before and after them (the polyphase filter is only a few dozen samples long); the price is
that a chunk comes out once the audio after it has arrived.
"""

from __future__ import annotations

from math import ceil, gcd

import numpy as np
from scipy.signal import firwin, resample_poly

from sarai.audio.pcm import SAMPLE_RATE


class StreamResampler:
    """`push()` audio at `src_rate`; it returns what is ready at `dst_rate` (float32).

    The output is continuous across pushes: the same samples one call to resample_poly on
    the whole stream would give, up to the last chunk, which waits for its right context.
    """

    def __init__(self, src_rate: int, dst_rate: int = SAMPLE_RATE) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"sample rates must be positive, not {src_rate} → {dst_rate}")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        g = gcd(src_rate, dst_rate)
        self._up, self._down = dst_rate // g, src_rate // g
        # Whole periods of the rate ratio, at least 10 ms, so every chunk starts on an
        # input sample that falls exactly on an output sample.
        self._chunk = self._down * max(1, ceil(src_rate / 100 / self._down))
        self._out_chunk = self._chunk * self._up // self._down
        self._pad = self._chunk  # context each side: far longer than the filter's half
        # resample_poly's own anti-aliasing filter, designed once instead of on every call.
        rate = max(self._up, self._down)
        self._filter = None if self.identity else firwin(
            2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(np.float32)
        # Input not yet fully used; starts `_pad` samples before the next chunk to resample.
        self._buf = np.zeros(self._pad, np.float32)

    @property
    def identity(self) -> bool:
        return self._up == self._down

    @property
    def lag_s(self) -> float:
        """How much input must follow a sample before it comes out (at most)."""
        return 0.0 if self.identity else (self._chunk + self._pad) / self.src_rate

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = samples.astype(np.float32, copy=False)
        if self.identity:
            return x.copy()
        self._buf = np.concatenate([self._buf, x])
        need = self._pad + self._chunk + self._pad
        chunks = (len(self._buf) - 2 * self._pad) // self._chunk
        if chunks <= 0 or len(self._buf) < need:
            return np.zeros(0, np.float32)
        used = chunks * self._chunk
        window = self._buf[: self._pad + used + self._pad]
        y = resample_poly(window, self._up, self._down, window=self._filter)
        lo = self._pad * self._up // self._down
        out = y[lo : lo + chunks * self._out_chunk].astype(np.float32)
        self._buf = self._buf[used:]
        return out
