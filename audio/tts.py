"""Speech synthesis, one sentence at a time: Piper voices, espeak-ng where none is installed."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from sarai.audio.errors import AudioError
from sarai.audio.settings import TtsSettings

log = logging.getLogger(__name__)


class Voice(Protocol):
    """Anything that can say a sentence."""

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> np.ndarray:
        """int16 mono audio at `sample_rate`, ending with a short pause after punctuation (empty
        if nothing)."""


def _pause(rate: int, ms: int) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def _pause_after(text: str, rate: int, ms: int) -> np.ndarray:
    """The pause after a piece: none where it was cut between words (a first clause or a
    reply that runs on, see audio.sentences), as the sentence goes on in the next piece."""
    ends = text.rstrip().rstrip("\"')]»”")[-1:]
    return _pause(rate, ms if ends in ".!?…,;:" else 0)


class _ShrinkingSession:
    """Piper's onnxruntime session, run so that its memory arena gives back what a run grew.

    onnxruntime's CPU arena keeps the largest buffers any run needed: one long sentence would
    otherwise stay in RAM for the life of the daemon (a 400-character sentence kept ~350 MB).
    Shrinking at the end of each run frees the chunks the run added; measured here it costs no
    synthesis time, while disabling the arena altogether made Piper 20-35 % slower.
    """

    def __init__(self, session: Any) -> None:
        import onnxruntime as ort

        self._session = session
        self._options = ort.RunOptions()
        self._options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names: Any, feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, feed, run_options or self._options)

    def __getattr__(self, name: str) -> Any:  # inputs, outputs, providers: the session's own
        return getattr(self._session, name)


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
        self._voice.session = _ShrinkingSession(self._voice.session)
        self._syn = SynthesisConfig(length_scale=settings.length_scale)
        self._lock = threading.Lock()
        self.name = voice_path.stem
        self.sample_rate: int = self._voice.config.sample_rate

    def synthesize(self, text: str) -> np.ndarray:
        """Speak one sentence; returns int16 mono audio (empty for text with nothing to say)."""
        with self._lock:
            chunks = [c.audio_int16_array for c in self._voice.synthesize(text, self._syn)]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([*chunks, _pause_after(text, self.sample_rate,
                                                     self._s.sentence_silence_ms)])


class EspeakVoice:
    """espeak-ng through its command line: robotic, but it speaks almost every language."""

    sample_rate = 22050

    def __init__(self, settings: TtsSettings, language: str) -> None:
        if shutil.which("espeak-ng") is None:
            raise AudioError("espeak-ng is not installed; no voice for this language")
        self._s = settings
        self.language = language
        self.name = f"espeak-ng:{language}"
        speed = int(175 / settings.length_scale)
        self._cmd = ["espeak-ng", "-v", language, "-s", str(speed), "--stdout"]

    def synthesize(self, text: str) -> np.ndarray:
        proc = subprocess.run([*self._cmd, text], capture_output=True, timeout=30)
        if proc.returncode != 0 or not proc.stdout:
            raise AudioError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
        data, rate = sf.read(io.BytesIO(proc.stdout), dtype="int16")
        if rate != self.sample_rate:
            from sarai.audio.pcm import resample

            data = resample(data, rate, self.sample_rate)
        return np.concatenate([data, _pause_after(text, self.sample_rate,
                                                  self._s.sentence_silence_ms)])


class VoiceBank:
    """One voice per language, loaded on first use.

    `resolve(name)` turns a configured voice name into a Piper .onnx path; a language with no
    configured voice, or the name "espeak", gets espeak-ng.
    """

    def __init__(self, settings: TtsSettings, resolve: Callable[[str], Path]) -> None:
        self._s = settings
        self._resolve = resolve
        self._voices: dict[str, Voice] = {}
        self._lock = threading.Lock()

    def _configured(self, language: str) -> str:
        if language in self._s.voices:
            return self._s.voices[language]
        return self._s.voice if language == self._s.language else "espeak"

    def voice(self, language: str | None = None) -> Voice:
        lang = (language or self._s.language).split("-")[0]
        with self._lock:
            if lang not in self._voices:
                name = self._configured(lang)
                if name == "espeak":
                    self._voices[lang] = EspeakVoice(self._s, lang)
                else:
                    self._voices[lang] = Speaker(self._s, self._resolve(name))
                log.info("voice for %s: %s", lang, self._voices[lang].name)
            return self._voices[lang]

    def preload(self) -> None:
        self.voice(None)
