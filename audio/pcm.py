"""Reading, converting and writing audio: everything inside SARAi is 16 kHz mono int16."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from sarai.audio.errors import AudioError

SAMPLE_RATE = 16_000


def timed_frames(
    block: np.ndarray, arrived_at: float, frame_ms: int
) -> Iterator[tuple[np.ndarray, float]]:
    """16 kHz audio that finished arriving at `arrived_at`, cut into frames of `frame_ms`,
    each with the time its last sample arrived. A short remainder comes last."""
    n = SAMPLE_RATE * frame_ms // 1000
    for start in range(0, len(block), n):
        end = min(start + n, len(block))
        yield block[start:end], arrived_at - (len(block) - end) / SAMPLE_RATE


@dataclass(frozen=True)
class Pcm:
    """Mono 16-bit audio at a known rate."""

    samples: np.ndarray  # int16, shape (n,)
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def as_float(self) -> np.ndarray:
        return self.samples.astype(np.float32) / 32768.0


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] (or int16 already) to int16."""
    if samples.dtype == np.int16:
        return samples
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling of mono float or int16 audio; returns the same dtype."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples
    g = gcd(src_rate, dst_rate)
    out = resample_poly(samples.astype(np.float32), dst_rate // g, src_rate // g)
    if samples.dtype == np.int16:
        return np.clip(out, -32768, 32767).astype(np.int16)
    return out.astype(samples.dtype)


def to_mono_16k(data: np.ndarray, sample_rate: int) -> Pcm:
    """Any float array (frames × channels, or frames) at any rate → 16 kHz mono int16."""
    if data.ndim == 2:
        data = data.mean(axis=1)
    data = resample(data.astype(np.float32), sample_rate, SAMPLE_RATE)
    return Pcm(to_int16(data), SAMPLE_RATE)


def read_audio(path: str | Path) -> Pcm:
    """Read a WAV (or FLAC/OGG) file of any common rate and channel count as 16 kHz mono.

    Raises AudioError with a plain message for a missing, empty or corrupt file.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"audio file not found: {p}")
    if p.is_dir():
        raise AudioError(f"expected an audio file but {p} is a directory")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).split(":")[-1].strip() or "unreadable"
        raise AudioError(f"{p} is not a readable audio file ({detail})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{p} contains no audio samples")
    return to_mono_16k(data, rate)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono int16 (or float) audio as a 16-bit PCM WAV file."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), to_int16(samples), sample_rate, subtype="PCM_16")
    except (OSError, sf.LibsndfileError) as exc:
        raise AudioError(f"cannot write {p}: {exc}") from exc
