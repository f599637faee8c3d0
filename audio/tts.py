"""Speech synthesis with Piper, one sentence at a time."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from audio.errors import AudioError
from audio.settings import TtsSettings

log = logging.getLogger(__name__)


class Speaker:
    """A loaded Piper voice that turns text into int16 audio at `sample_rate`."""

    def __init__(self, settings: TtsSettings, voice_path: Path) -> None:
        self._s = settings
        if not voice_path.is_file():
            raise AudioError(f"voice model not found: {voice_path}; run 'sarai setup'")
        config = Path(f"{voice_path}.json")
        if not config.is_file():
            raise AudioError(f"voice config not found: {config}")
        from piper import PiperVoice, SynthesisConfig

        try:
            self._voice = PiperVoice.load(str(voice_path), config_path=str(config))
        except Exception as exc:  # onnxruntime raises its own hierarchy
            raise AudioError(f"cannot load voice {voice_path.name}: {exc}") from exc
        self._syn = SynthesisConfig(length_scale=settings.length_scale)
        self._lock = threading.Lock()
        self.sample_rate: int = self._voice.config.sample_rate

    def synthesize(self, text: str) -> np.ndarray:
        """Speak one sentence; returns int16 mono audio (empty for text with nothing to say)."""
        with self._lock:
            chunks = [c.audio_int16_array for c in self._voice.synthesize(text, self._syn)]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        pause = np.zeros(self.sample_rate * self._s.sentence_silence_ms // 1000, dtype=np.int16)
        return np.concatenate([*chunks, pause])
