"""What the router hears around the words: how much of an utterance is speech, and how loud
the rest is (music, traffic, a TV) compared with the voice.

A quiet room leaves the moments before, between and after the words near silence; sound the
user wants SARAi to hear fills them. So the background level is the level of the quietest
quarter-second of the utterance: music under continuous speech can fool a VAD into calling
every frame speech, but it cannot make the quiet moments quieter than the music. (The
segmenter's pre-roll guarantees such moments exist in every utterance it cuts.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from sarai.audio.errors import AudioError
from sarai.audio.settings import VadSettings
from sarai.audio.vad import UtteranceSegmenter, second_opinion

_FLOOR_DB = -100.0  # what digital silence reads as
_QUIET_MS = 240  # this much of the quietest audio stands for the background
_MUSIC_MAX_FLATNESS = 0.2  # tonal backgrounds below this are called music, others noise


@dataclass(frozen=True)
class AudioFeatures:
    duration_s: float
    speech_ratio: float  # voiced frames / all frames (webrtcvad)
    speech_dbfs: float  # median level of the voiced frames
    background_dbfs: float  # level of what is not speech
    flatness: float  # spectral flatness of the background: ~0 tonal (music) … ~1 noise

    @property
    def snr_db(self) -> float:
        """How far the voice stands above the background."""
        return self.speech_dbfs - self.background_dbfs

    @property
    def background_kind(self) -> str:
        return "music" if self.flatness < _MUSIC_MAX_FLATNESS else "noise"

    def as_scores(self) -> dict[str, float]:
        return {
            "audio_s": round(self.duration_s, 2),
            "speech_ratio": round(self.speech_ratio, 2),
            "background_dbfs": round(self.background_dbfs, 1),
            "snr_db": round(self.snr_db, 1),
        }


def _dbfs(frames: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) / 32768.0
    return np.maximum(20.0 * np.log10(np.maximum(rms, 1e-10)), _FLOOR_DB)


def _flatness(frames: np.ndarray, rate: int) -> float:
    """Mean spectral flatness (geometric / arithmetic mean of power) over 100 Hz – 4 kHz."""
    if len(frames) == 0:
        return 1.0
    win = np.hanning(frames.shape[1])
    power = np.abs(np.fft.rfft(frames.astype(np.float64) * win, axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(frames.shape[1], 1.0 / rate)
    band = power[:, (freqs >= 100) & (freqs <= 4000)]
    flat = np.exp(np.mean(np.log(band), axis=1)) / np.mean(band, axis=1)
    return float(np.mean(flat))


def analyse(samples: np.ndarray, sample_rate: int = 16_000, *, aggressiveness: int = 2,
            frame_ms: int = 30) -> AudioFeatures:
    """Features of one utterance of int16 mono audio (16 kHz as everywhere in SARAi)."""
    if samples.dtype != np.int16:
        raise AudioError("the router's audio analysis takes int16 samples")
    if sample_rate not in (8000, 16000, 32000, 48000):
        raise AudioError(f"the router's audio analysis cannot run at {sample_rate} Hz")
    flen = sample_rate * frame_ms // 1000
    n = len(samples) // flen
    if n == 0:
        raise AudioError(f"an utterance needs at least {frame_ms} ms of audio")
    frames = samples[: n * flen].reshape(n, flen)
    vad = webrtcvad.Vad(aggressiveness)
    voiced = np.array([vad.is_speech(f.tobytes(), sample_rate) for f in frames])
    level = _dbfs(frames)
    k = max(1, min(n // 2, _QUIET_MS // frame_ms))
    quietest = np.sort(level)[:k]
    background = float(np.median(quietest))
    speech = float(np.median(level[voiced])) if voiced.any() else float(np.median(level))
    # The background's character is judged on the quietest frames, the ones least coloured
    # by the voice.
    bg_frames = frames[np.argsort(level)[:k]]
    bg_frames = bg_frames[_dbfs(bg_frames) > _FLOOR_DB]
    return AudioFeatures(
        duration_s=len(samples) / sample_rate,
        speech_ratio=float(voiced.mean()),
        speech_dbfs=speech,
        background_dbfs=background,
        flatness=_flatness(bg_frames, sample_rate) if len(bg_frames) else 1.0,
    )


def utterance_in(samples: np.ndarray, vad: VadSettings) -> np.ndarray | None:
    """The speech in a recording cut as the live segmenter cuts it, with the sound around it.

    Unlike a padded split, nothing is added at the end: a file that stops while music plays
    must not gain a moment of silence the room never had. None when there is no speech.
    """
    seg = UtteranceSegmenter(vad, second_opinion=second_opinion(vad))
    utts = seg.push(samples) + seg.flush()
    return np.concatenate([u.samples for u in utts]) if utts else None
