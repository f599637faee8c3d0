"""Spoken versions of routing turns: espeak-ng speech, optionally over generated music or
noise, for the router benchmark and its tests. Everything is made here; nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE, resample, to_int16

# espeak-ng voice and speed per language; Latin-American Spanish, a little slower, is the
# one Whisper base understands best of espeak-ng's Spanish voices.
VOICES = {"en": ("en-us", 140), "es": ("es-419", 120)}
_NOTES = np.array([0, 2, 4, 5, 7, 9, 11])  # a major scale, in semitones


def speak(text: str, lang: str, *, lead_s: float = 0.5, tail_s: float = 0.5) -> np.ndarray:
    """`text` spoken by espeak-ng in `lang`, 16 kHz mono int16, with silence around it."""
    if shutil.which("espeak-ng") is None:
        raise AudioError("espeak-ng is not installed (apt-get install espeak-ng)")
    if lang not in VOICES:
        raise AudioError(f"no espeak-ng voice for language '{lang}'")
    voice, speed = VOICES[lang]
    with tempfile.TemporaryDirectory(prefix="sarai-speak-") as tmp:
        wav = Path(tmp) / "s.wav"
        proc = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise AudioError(f"espeak-ng failed: {proc.stderr.strip() or proc.returncode}")
        data, rate = sf.read(str(wav), dtype="float32")
    loud = np.flatnonzero(np.abs(data) > 0.01)
    if len(loud):
        data = data[loud[0] : loud[-1] + 1]
    data = resample(data, rate, SAMPLE_RATE)
    pad = [np.zeros(int(SAMPLE_RATE * s), np.float32) for s in (lead_s, tail_s)]
    return to_int16(np.concatenate([pad[0], data, pad[1]]))


def music(n: int, seed: int = 0) -> np.ndarray:
    """`n` samples of simple generated music (chords, a bass line, soft percussion), float."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    beat = SAMPLE_RATE // 2
    root = 48 + rng.integers(0, 12)
    for start in range(0, n, beat * 2):
        degree = rng.integers(0, 7)
        chord = [root + _NOTES[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
        seg = slice(start, min(n, start + beat * 2))
        ts = t[seg] - t[start]
        env = np.exp(-1.5 * ts)
        for midi in [*chord, chord[0] - 12]:
            f = 440.0 * 2 ** ((midi - 69) / 12)
            for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)):
                out[seg] += a * env * np.sin(2 * np.pi * f * h * ts)
    for start in range(0, n, beat // 2):  # a hi-hat tick on every eighth note
        m = min(n, start + 400)
        out[start:m] += 0.3 * rng.standard_normal(m - start) * np.exp(-np.arange(m - start) / 80)
    return out / np.max(np.abs(out))


def noise(n: int, seed: int = 0) -> np.ndarray:
    """`n` samples of pink noise (like a fan, traffic or rain), float."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    out = np.fft.irfft(spec, n)
    return out / np.max(np.abs(out))


def over_background(speech: np.ndarray, kind: str, snr_db: float, seed: int = 0) -> np.ndarray:
    """`speech` (int16) with `kind` ("music" or "noise") playing under it at `snr_db`."""
    make = {"music": music, "noise": noise}.get(kind)
    if make is None:
        raise AudioError(f"unknown background '{kind}' (music or noise)")
    voice = speech.astype(np.float64) / 32768.0
    active = voice[np.abs(voice) > 0.01]
    voice_rms = np.sqrt(np.mean(active**2)) if len(active) else 0.1
    bg = make(len(voice), seed)
    bg *= voice_rms / (np.sqrt(np.mean(bg**2)) * 10 ** (snr_db / 20))
    mixed = voice + bg
    peak = np.max(np.abs(mixed))
    if peak > 0.99:
        mixed *= 0.99 / peak
    return to_int16(mixed.astype(np.float32))
