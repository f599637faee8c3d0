"""Echo removal on real speech: SARAi's own voice, delayed and scaled as a room would, is
subtracted; the user's voice over it survives."""

import time

import numpy as np

from sarai.audio.echo import EchoGate, residual_ratio
from sarai.audio.pcm import read_audio


def _speech(make_speech, text: str, voice: str = "en-us") -> np.ndarray:
    return read_audio(make_speech([text], voice=voice)).samples.astype(np.float32)


def _frames(x: np.ndarray, n: int = 480):
    for i in range(0, len(x) - n + 1, n):
        yield i, x[i : i + n]


def _play(gate: EchoGate, ref: np.ndarray) -> None:
    for i in range(0, len(ref), 441):
        gate.played(ref[i : i + 441].astype(np.int16), 16000)


def test_own_voice_is_removed_and_the_users_survives(make_speech):
    ref = _speech(make_speech, "The sea is calm tonight and the stars are very bright.")
    user = _speech(make_speech, "Stop, what is your name?", voice="en-gb")
    delay = 800  # 50 ms of room and device latency
    echo = np.zeros(len(ref) + delay, np.float32)
    echo[delay:] = 0.6 * ref
    echo = echo[: len(ref)]

    gate = EchoGate()
    _play(gate, ref)
    at = time.perf_counter()
    echo_only = [residual_ratio(f.astype(np.int16), gate.clean(f.astype(np.int16), at))
                 for i, f in _frames(echo) if i > 8000 and np.sqrt(np.mean(f ** 2)) > 500]
    assert echo_only and np.median(echo_only) < 0.05, np.median(echo_only)

    gate = EchoGate()
    _play(gate, ref)
    mixed = echo.copy()
    start = 16000
    mixed[start : start + len(user)] += user[: len(mixed) - start]
    kept = []
    for i, f in _frames(mixed):
        cleaned = gate.clean(np.clip(f, -32768, 32767).astype(np.int16), at)
        u = user[i - start : i - start + 480] if start <= i < start + len(user) - 480 else None
        if u is not None and np.sqrt(np.mean(u ** 2)) > 1000:
            kept.append(residual_ratio(f.astype(np.int16), cleaned))
    # Where the user speaks, most of what was heard is still there after the subtraction.
    assert kept and np.median(kept) > 0.3, np.median(kept)


def test_silence_in_the_reference_keeps_the_gate_quiet():
    gate = EchoGate()
    gate.played(np.zeros(22050, np.int16), 22050)
    assert not gate.active()
    gate.played(np.full(2205, 1000, np.int16), 22050)
    assert gate.active()
