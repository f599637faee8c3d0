"""Stand-ins for the device-free conversation tests (tests/test_conversation.py).

These replace Whisper and the language models, and only them, so the conversation core's
logic (speculation, held audio, early ends, barge-in, echo, modes, concurrent turns) can be
driven frame by frame in virtual time and give the same result every run. They are named
stand-ins on purpose: the real components are tested elsewhere (test_asr_tts.py,
test_llamacpp.py, test_voice_loop.py on PulseAudio devices). The voice is the real espeak-ng
voice and the VAD the real webrtcvad.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import numpy as np
from scipy.signal import correlate

from sarai.audio.asr import Transcript
from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.settings import TtsSettings
from sarai.audio.tts import EspeakVoice
from sarai.daemon.config import load_config
from sarai.daemon.conversation.harness import ScriptedModels, VoiceHarness
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.speech import SpokenLimits
from sarai.daemon.conversation.turn import Assistant
from sarai.routing.router import Router

_SPEECH: dict[tuple[str, str], np.ndarray] = {}


def spoken(text: str, tmp: Path, voice: str = "en-us") -> np.ndarray:
    """`text` spoken by espeak-ng at 16 kHz, without its leading and trailing silence."""
    key = (text, voice)
    if key not in _SPEECH:
        wav = tmp / f"say-{uuid.uuid4().hex[:8]}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
        pcm = read_audio(wav).samples
        loud = np.flatnonzero(np.abs(pcm) > 300)
        _SPEECH[key] = pcm[loud[0] : loud[-1] + 1]
    return _SPEECH[key]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.int16)


class ScriptedTranscriber:
    """Stand-in for Whisper: it was told what each recording says, and recognises a recording
    by its length (an utterance is the speech plus a little audio before and after it)."""

    def __init__(self) -> None:
        self._known: list[tuple[float, str]] = []
        self.calls: list[float] = []
        self.heard: list[np.ndarray] = []  # the audio of every call

    def learn(self, samples: np.ndarray, text: str) -> np.ndarray:
        self._known.append((len(samples) / SAMPLE_RATE, text))
        return samples

    def transcribe(self, samples: np.ndarray, fit_window: bool = True) -> Transcript:  # noqa: ARG002
        seconds = len(samples) / SAMPLE_RATE
        self.calls.append(seconds)
        self.heard.append(samples.copy())
        # Pre-roll (300 ms) and the kept tail (≤ 200 ms) come with the speech.
        text = min(self._known, key=lambda k: abs(k[0] + 0.4 - seconds))[1] if self._known \
            else ""
        return Transcript(text, "en", 1.0, "scripted")

    def preload(self) -> None:
        pass


def kept_levels(said: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """`said` found in `turn` by its waveform: for every voiced 10 ms of it, its level in the
    turn over its level as said (about 1 where it reached the turn, about 0 where it was
    lost)."""
    said64, turn64 = said.astype(np.float64), turn.astype(np.float64)
    lag = int(np.argmax(correlate(turn64, said64, mode="valid")))
    before, after = _levels(said64), _levels(turn64[lag:lag + len(said64)])
    voiced = before > 0.1 * before.max()
    return after[voiced] / before[voiced]


def _levels(audio: np.ndarray) -> np.ndarray:
    """RMS of each 10 ms."""
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    return np.sqrt((frames ** 2).mean(axis=1))


_ROUTER: Router | None = None


def router(cache: Path) -> Router:
    """The real router (its classifier trained once per test session)."""
    global _ROUTER
    if _ROUTER is None:
        cfg = load_config(None)
        _ROUTER = Router(cfg.routing, cache_dir=cache)
    return _ROUTER


class _Voices:
    """The real espeak-ng voice, for every language."""

    def __init__(self) -> None:
        self._voice = EspeakVoice(TtsSettings(), "en")

    def voice(self, language: str | None = None) -> EspeakVoice:  # noqa: ARG002
        return self._voice


def make_harness(tmp: Path, *, yaml: str = "", models: ScriptedModels | None = None,
                 transcriber: ScriptedTranscriber | None = None, voices=None,
                 end_of_turn=None, **kw) -> VoiceHarness:
    """A VoiceHarness over the default configuration (plus `yaml`), with the stand-ins."""
    cfg_file = tmp / f"harness-{uuid.uuid4().hex[:6]}.yaml"
    cfg_file.write_text(yaml)
    cfg = load_config(cfg_file)
    assistant = Assistant(
        system_prompt=cfg.assistant.system_prompt,
        registry=models or ScriptedModels(),  # type: ignore[arg-type]
        router=router(tmp.parent / "router-cache"),
        memory=Conversation(cfg.assistant.history_turns, cfg.assistant.history_tokens),
        transcriber=transcriber or ScriptedTranscriber(),  # type: ignore[arg-type]
        voices=voices or _Voices(),  # type: ignore[arg-type]
        spoken=SpokenLimits(cfg.assistant.spoken_max_sentences, cfg.assistant.spoken_max_s),
        end_of_turn=end_of_turn,
    )
    return VoiceHarness(assistant, cfg.listen, cfg.audio.vad, **kw)
