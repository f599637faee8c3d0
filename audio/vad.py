"""Cutting a stream of 16 kHz audio into utterances with webrtcvad.

The segmenter is push-based so the same code serves a file and the microphone: feed it
any amount of audio, get back the utterances that have ended.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import webrtcvad

from audio.pcm import SAMPLE_RATE
from audio.settings import VadSettings


class VadState(StrEnum):
    SILENCE = "silence"
    SPEECH = "speech"


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech, with the audio that came just before it (pre-roll)."""

    samples: np.ndarray  # int16 mono at SAMPLE_RATE
    start_s: float  # position in the stream where speech began
    end_s: float  # position where speech ended (before the closing silence)
    speech_ratio: float  # voiced frames / all frames in the utterance
    ended_at: float = field(default_factory=time.perf_counter)  # wall clock when it closed
    truncated: bool = False  # cut at max_utterance_s

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class UtteranceSegmenter:
    """Stateful VAD: push audio in, get finished utterances out."""

    def __init__(self, settings: VadSettings, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad cannot run at {sample_rate} Hz")
        self._s = settings
        self._rate = sample_rate
        self._vad = webrtcvad.Vad(settings.aggressiveness)
        self._frame_len = sample_rate * settings.frame_ms // 1000
        self._pending = np.zeros(0, dtype=np.int16)
        fms = settings.frame_ms
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, settings.preroll_ms // fms))
        self._recent: deque[bool] = deque(maxlen=max(1, settings.start_speech_ms // fms))
        self._frames: list[np.ndarray] = []
        self._voiced = 0
        self._trailing_silence = 0
        self._position = 0  # frames seen so far
        self._start_frame = 0
        self.state = VadState.SILENCE

    @property
    def frame_ms(self) -> int:
        return self._s.frame_ms

    def is_speech(self, frame: np.ndarray) -> bool:
        return self._vad.is_speech(frame.tobytes(), self._rate)

    def push(self, samples: np.ndarray) -> list[Utterance]:
        """Feed int16 mono audio; returns the utterances that closed within it."""
        if samples.dtype != np.int16:
            raise TypeError("the segmenter takes int16 samples")
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        done: list[Utterance] = []
        n_frames = len(buf) // self._frame_len
        for i in range(n_frames):
            frame = buf[i * self._frame_len : (i + 1) * self._frame_len]
            utt = self._step(frame, self.is_speech(frame))
            if utt is not None:
                done.append(utt)
        self._pending = buf[n_frames * self._frame_len :].copy()
        return done

    def flush(self) -> list[Utterance]:
        """End of stream: close an utterance that is still open."""
        if self.state is VadState.SPEECH:
            utt = self._close(truncated=False)
            return [utt] if utt is not None else []
        return []

    def reset(self) -> None:
        """Forget everything heard so far (used while SARAi itself is speaking)."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._preroll.clear()
        self._recent.clear()
        self._frames = []
        self.state = VadState.SILENCE

    def _step(self, frame: np.ndarray, voiced: bool) -> Utterance | None:
        self._position += 1
        fms = self._s.frame_ms
        if self.state is VadState.SILENCE:
            self._preroll.append(frame)
            self._recent.append(voiced)
            if len(self._recent) == self._recent.maxlen and sum(self._recent) >= 0.8 * len(
                self._recent
            ):
                self.state = VadState.SPEECH
                self._frames = list(self._preroll)
                self._voiced = sum(self._recent)
                self._trailing_silence = 0
                self._start_frame = self._position - len(self._recent)
                self._preroll.clear()
                self._recent.clear()
            return None

        self._frames.append(frame)
        if voiced:
            self._voiced += 1
            self._trailing_silence = 0
        else:
            self._trailing_silence += 1
        if self._trailing_silence * fms >= self._s.end_silence_ms:
            return self._close(truncated=False)
        if len(self._frames) * fms >= self._s.max_utterance_s * 1000:
            return self._close(truncated=True)
        return None

    def _close(self, truncated: bool) -> Utterance | None:
        fms = self._s.frame_ms
        # Keep a little of the closing silence so the last phoneme is not clipped.
        keep_tail = min(self._trailing_silence, max(1, 200 // fms))
        frames = self._frames[: len(self._frames) - self._trailing_silence + keep_tail]
        voiced = self._voiced
        end_frame = self._position - self._trailing_silence
        self._frames = []
        self._trailing_silence = 0
        self._voiced = 0
        self.state = VadState.SILENCE
        if voiced * fms < self._s.min_speech_ms or not frames:
            return None
        samples = np.concatenate(frames)
        return Utterance(
            samples=samples,
            start_s=self._start_frame * fms / 1000,
            end_s=end_frame * fms / 1000,
            speech_ratio=voiced / len(frames),
            truncated=truncated,
        )


def split_utterances(samples: np.ndarray, settings: VadSettings) -> list[Utterance]:
    """All utterances in a whole recording (16 kHz mono int16)."""
    seg = UtteranceSegmenter(settings)
    found = seg.push(samples)
    # Trailing silence lets an utterance that ends at the very end of a file close normally.
    found += seg.push(np.zeros(SAMPLE_RATE * settings.end_silence_ms // 1000 + 1, np.int16))
    return found + seg.flush()
