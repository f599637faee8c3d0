"""Cutting a stream of 16 kHz audio into utterances with webrtcvad.

The segmenter is push-based so the same code serves a file and the microphone: feed it
any amount of audio, get back the utterances that have ended.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import webrtcvad

from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.settings import VadSettings


class VadState(StrEnum):
    SILENCE = "silence"
    SPEECH = "speech"


class SegmentKind(StrEnum):
    START = "start"  # speech began
    PAUSE = "pause"  # a short pause: the utterance *may* be over (speculation can start)
    RESUME = "resume"  # speech went on after a pause
    END = "end"  # the utterance is over


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech, with the audio that came just before it (pre-roll)."""

    samples: np.ndarray  # int16 mono at SAMPLE_RATE
    start_s: float  # position in the stream where speech began
    end_s: float  # position where speech ended (before the closing silence)
    speech_ratio: float  # voiced frames / all frames in the utterance
    ended_at: float = field(default_factory=time.perf_counter)  # wall clock when it closed
    truncated: bool = False  # cut at max_utterance_s
    # Wall clock when the last voiced frame arrived: "end of speech" for latency figures.
    speech_end_at: float = field(default_factory=time.perf_counter)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class SegmentEvent:
    kind: SegmentKind
    utterance: Utterance | None = None  # END: the utterance; PAUSE: the speech so far


class UtteranceSegmenter:
    """Stateful VAD: push audio in, get finished utterances out."""

    def __init__(
        self,
        settings: VadSettings,
        sample_rate: int = SAMPLE_RATE,
        pause_ms: int | None = None,
        second_opinion: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
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
        self._last_voiced_at = time.perf_counter()
        self._frame_at = self._last_voiced_at  # capture time of the frame being judged
        self._pause_frames = (pause_ms // settings.frame_ms) if pause_ms else 0
        self._events: list[SegmentEvent] = []
        self._second_opinion = second_opinion
        self.rejected = 0  # utterances the second opinion took for noise
        self.state = VadState.SILENCE

    @property
    def frame_ms(self) -> int:
        return self._s.frame_ms

    def is_speech(self, frame: np.ndarray) -> bool:
        return self._vad.is_speech(frame.tobytes(), self._rate)

    def push(self, samples: np.ndarray) -> list[Utterance]:
        """Feed int16 mono audio; returns the utterances that closed within it."""
        return [e.utterance for e in self.push_events(samples) if e.kind is SegmentKind.END]

    def push_events(self, samples: np.ndarray, at: float | None = None) -> list[SegmentEvent]:
        """Feed int16 mono audio whose last sample was captured at `at` (default: now, on
        the perf_counter clock); returns start/pause/resume/end events in order.

        PAUSE comes once per pause, when the silence reaches `pause_ms` (if set), carrying
        the speech so far, so work on it can start before the turn is certainly over.
        """
        if samples.dtype != np.int16:
            raise TypeError("the segmenter takes int16 samples")
        end_at = time.perf_counter() if at is None else at
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n_frames = len(buf) // self._frame_len
        for i in range(n_frames):
            frame = buf[i * self._frame_len : (i + 1) * self._frame_len]
            self._frame_at = end_at - (len(buf) - (i + 1) * self._frame_len) / self._rate
            utt = self._step(frame, self.is_speech(frame))
            if utt is not None:
                self._events.append(SegmentEvent(SegmentKind.END, utt))
        self._pending = buf[n_frames * self._frame_len :].copy()
        events, self._events = self._events, []
        return events

    def flush(self) -> list[Utterance]:
        """End of stream: close an utterance that is still open."""
        if self.state is VadState.SPEECH:
            utt = self._close(truncated=False)
            return [utt] if utt is not None else []
        return []

    @property
    def silence_ms(self) -> int:
        """How long the current utterance has been silent (0 outside speech)."""
        return self._trailing_silence * self._s.frame_ms if self.state is VadState.SPEECH else 0

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
                self._last_voiced_at = self._frame_at
                self._events.append(SegmentEvent(SegmentKind.START))
            return None

        self._frames.append(frame)
        if voiced:
            self._voiced += 1
            if self._pause_frames and self._trailing_silence >= self._pause_frames:
                self._events.append(SegmentEvent(SegmentKind.RESUME))
            self._trailing_silence = 0
            self._last_voiced_at = self._frame_at
        else:
            self._trailing_silence += 1
            if self._pause_frames and self._trailing_silence == self._pause_frames:
                partial = self._utterance(truncated=False)
                if partial is not None:
                    self._events.append(SegmentEvent(SegmentKind.PAUSE, partial))
        if self._trailing_silence * fms >= self._s.end_silence_ms:
            return self._close(truncated=False)
        if len(self._frames) * fms >= self._s.max_utterance_s * 1000:
            return self._close(truncated=True)
        return None

    def _utterance(self, truncated: bool) -> Utterance | None:
        """The speech collected so far as an utterance (None if too short to count)."""
        fms = self._s.frame_ms
        # Keep a little of the closing silence so the last phoneme is not clipped.
        keep_tail = min(self._trailing_silence, max(1, 200 // fms))
        frames = self._frames[: len(self._frames) - self._trailing_silence + keep_tail]
        if self._voiced * fms < self._s.min_speech_ms or not frames:
            return None
        return Utterance(
            samples=np.concatenate(frames),
            start_s=self._start_frame * fms / 1000,
            end_s=(self._position - self._trailing_silence) * fms / 1000,
            speech_ratio=self._voiced / len(frames),
            ended_at=self._frame_at,
            truncated=truncated,
            speech_end_at=self._last_voiced_at,
        )

    def _close(self, truncated: bool) -> Utterance | None:
        utt = self._utterance(truncated)
        if utt is not None and self._second_opinion is not None \
                and not self._second_opinion(utt.samples):
            self.rejected += 1
            utt = None
        self._frames = []
        self._trailing_silence = 0
        self._voiced = 0
        self.state = VadState.SILENCE
        return utt


def second_opinion(settings: VadSettings) -> Callable[[np.ndarray], bool] | None:
    """The configured noise check for closed utterances, if any."""
    if settings.second_opinion == "silero":
        from sarai.audio.silero import SileroCheck

        return SileroCheck().accepts
    return None


def split_utterances(samples: np.ndarray, settings: VadSettings) -> list[Utterance]:
    """All utterances in a whole recording (16 kHz mono int16)."""
    seg = UtteranceSegmenter(settings, second_opinion=second_opinion(settings))
    found = seg.push(samples)
    # Trailing silence lets an utterance that ends at the very end of a file close normally.
    found += seg.push(np.zeros(SAMPLE_RATE * settings.end_silence_ms // 1000 + 1, np.int16))
    return found + seg.flush()
