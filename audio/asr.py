"""Speech recognition with faster-whisper (CTranslate2 Whisper models)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.settings import AsrSettings
from sarai.audio.short_window import WindowPlan, transcribe_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    model: str


class Transcriber:
    """Turns 16 kHz mono utterances into text.

    `model_dirs` maps a model name from the settings (e.g. "whisper-tiny-en") to the folder
    holding its CTranslate2 files. Models load on first use and then stay resident.
    """

    def __init__(self, settings: AsrSettings, model_dirs: dict[str, Path]) -> None:
        self._s = settings
        self._dirs = model_dirs
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()
        self._plan = WindowPlan(min_window_s=settings.min_window_s)

    def model_name_for(self, language: str | None) -> str:
        lang = language or self._s.language
        return self._s.model_en if lang == "en" else self._s.model_multilingual

    def _model(self, name: str):  # -> faster_whisper.WhisperModel
        with self._lock:
            if name in self._models:
                return self._models[name]
            folder = self._dirs.get(name)
            if folder is None or not (Path(folder) / "model.bin").is_file():
                raise AudioError(
                    f"speech recognition model '{name}' is not installed "
                    f"(looked in {folder}); run 'sarai setup'"
                )
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(
                    str(folder),
                    device="cpu",
                    compute_type=self._s.compute_type,
                    cpu_threads=self._s.threads,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise AudioError(f"cannot load speech recognition model '{name}': {exc}") from exc
            self._models[name] = model
            return model

    def preload(self) -> None:
        self._model(self.model_name_for(None))

    def transcribe(self, samples: np.ndarray, language: str | None = None, *,
                   fit_window: bool | None = None) -> Transcript:
        """Transcribe int16 or float32 16 kHz mono audio (`fit_window` overrides the
        setting: False decodes on Whisper's own 30 s window)."""
        lang = language or self._s.language
        name = self.model_name_for(lang)
        model = self._model(name)
        audio = samples.astype(np.float32) / 32768.0 if samples.dtype == np.int16 else samples
        wanted = None if lang == "auto" else lang
        fit = self._s.fit_window if fit_window is None else fit_window
        window = self._plan.window_s(len(audio) / SAMPLE_RATE) if fit else None
        if window is not None:
            # A short turn is decoded on a window sized to it (a fraction of the 30 s cost);
            # if Whisper loops on it, the full window decides.
            r = transcribe_window(model, audio, window, language=wanted,
                                  beam_size=self._s.beam_size, prompt_text=self._s.prompt)
            if not r.degenerate:
                return Transcript(r.text, r.language, r.language_probability, name)
            log.debug("short-window decode looped on %.1f s; using the full window",
                      len(audio) / SAMPLE_RATE)
        segments, info = model.transcribe(
            audio,
            language=wanted,
            beam_size=self._s.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=self._s.prompt or None,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text, info.language, float(info.language_probability), name)
