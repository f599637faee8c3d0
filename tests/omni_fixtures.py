"""Fixtures for the Omni tests: the tiny Qwen2.5-Omni model and small media files."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tiny_omni


@pytest.fixture(scope="session")
def tiny() -> tiny_omni.TinyOmni:
    """Built once (about a minute on two cores) and cached under ~/.cache/sarai/test-models."""
    return tiny_omni.build()


def write_tone(path: Path, seconds: float, *, rate: int = 16000, freq: float = 440.0) -> Path:
    """A WAV of a tone with a little noise (the audio encoder gets non-trivial input)."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    audio = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
    sf.write(path, audio.astype(np.float32), rate, subtype="PCM_16")
    return path


@cache
def _spoken(rate: int) -> np.ndarray:
    """A few sentences of espeak-ng speech at `rate`, float32, trimmed of silence."""
    from conftest import espeak
    from sarai.audio.pcm import resample

    with tempfile.TemporaryDirectory() as d:
        data, sr = sf.read(espeak("What is the weather like in Barcelona today? Tell me "
                                  "something about the history of the city.",
                                  Path(d) / "s.wav"), dtype="float32")
    loud = np.flatnonzero(np.abs(data) > 0.01)
    data = data[loud[0] : loud[-1] + 1]
    return resample(data, sr, rate) if rate != sr else data


def speech_samples(seconds: float, rate: int = 16000) -> np.ndarray:
    """Exactly `seconds` of speech (the sentences repeated, 0.4 s apart), float32."""
    one = np.concatenate([_spoken(rate), np.zeros(int(0.4 * rate), np.float32)])
    n = int(seconds * rate)
    return np.tile(one, n // len(one) + 1)[:n]


def write_speech(path: Path, seconds: float, *, rate: int = 16000) -> Path:
    """A WAV of exactly `seconds` of speech: an attachment that passes the speech check."""
    sf.write(path, speech_samples(seconds, rate), rate, format="WAV", subtype="PCM_16")
    return path


def write_video(path: Path, *, seconds: float = 3.0, fps: int = 10, size=(160, 120),
                with_audio: bool = True, sound: np.ndarray | None = None) -> Path:
    """An MPEG-4 video (changing colour) with an AAC sound track, encoded with PyAV: speech
    unless `sound` (16 kHz float samples) is given."""
    import av

    c = av.open(str(path), "w")
    v = c.add_stream("mpeg4", rate=fps)
    v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
    a = c.add_stream("aac", rate=16000) if with_audio else None
    if a is not None:
        a.layout = "mono"
    for i in range(int(seconds * fps)):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[..., 0] = (i * 20) % 255
        for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
    for p in v.encode():
        c.mux(p)
    if a is not None:
        s = (speech_samples(seconds) if sound is None else sound).astype(np.float32)
        for k in range(0, len(s), 1024):
            fr = av.AudioFrame.from_ndarray(s[None, k : k + 1024], format="flt", layout="mono")
            fr.sample_rate = 16000
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return path
