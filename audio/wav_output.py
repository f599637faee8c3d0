"""Answers spoken into a WAV file instead of a speaker (`--output FILE`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sarai.audio.pcm import SAMPLE_RATE, resample, write_wav
from sarai.audio.playback import Done, Notify


class _FileSession:
    """One answer's audio, appended to the file; "heard" the moment it is written."""

    def __init__(self, out: WavOutput, on_first_audio: Notify | None,
                 on_done: Done | None) -> None:
        self._out = out
        self._on_first_audio = on_first_audio
        self._on_done = on_done
        self.first_audio_at: float | None = None
        self.done_at: float | None = None
        self.cut = False

    def play(self, samples: np.ndarray, sample_rate: int, on_heard: Notify | None = None) -> None:
        if not len(samples):
            return
        self._out.append(samples, sample_rate)
        if on_heard is not None:
            on_heard(time.perf_counter())
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
            if self._on_first_audio is not None:
                self._on_first_audio(self.first_audio_at)

    def finish(self) -> None:
        if self.done_at is None:
            self.done_at = time.perf_counter()
            if self._on_done is not None:
                self._on_done(self.done_at, False)

    def wait(self, timeout: float | None = None) -> bool:  # noqa: ARG002
        return self.done_at is not None

    @property
    def done(self) -> bool:
        return self.done_at is not None


class WavOutput:
    """Collects everything spoken, with a short gap between answers, and writes one WAV file
    on close. Pausing and stopping do nothing: a file is never talked over."""

    GAP_S = 0.5

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parts: list[np.ndarray] = []
        self._rate: int | None = None
        self.stopped_at: float | None = None
        self.playing = False

    def session(self, on_first_audio: Notify | None = None,
                on_done: Done | None = None) -> _FileSession:
        if self._parts and self._rate is not None:
            self._parts.append(np.zeros(int(self._rate * self.GAP_S), dtype=np.int16))
        return _FileSession(self, on_first_audio, on_done)

    def append(self, samples: np.ndarray, sample_rate: int) -> None:
        if self._rate is None:
            self._rate = sample_rate
        self._parts.append(resample(samples, sample_rate, self._rate))

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def wake(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def drain(self, timeout: float | None = None) -> None:
        pass

    @property
    def samples(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.int16)

    def close(self) -> None:
        write_wav(self.path, self.samples, self._rate or SAMPLE_RATE)
