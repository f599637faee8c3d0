"""Shared fixtures: starter models, speech made with espeak-ng, PulseAudio test devices."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sarai.audio.pulse import PulseRoom
from sarai.daemon.paths import Paths
from sarai.models import starter

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The starter models, installed once with the real installer (normally by `make setup`)."""
    root = Paths.from_env().models_dir
    missing = [n for n, m in starter.CATALOGUE.items() if not starter.is_installed(m, root)]
    if missing:
        starter.install(missing, root, progress=lambda line: print(line, file=sys.stderr))
    return root


@pytest.fixture(scope="session")
def smollm2(models_dir: Path) -> Path:
    return starter.CATALOGUE["smollm2-135m"].path(models_dir)


@pytest.fixture(scope="session")
def gemma(models_dir: Path) -> Path:
    return starter.CATALOGUE["gemma3-270m"].path(models_dir)


def espeak(text: str, path: Path, *, voice: str = "en-us", speed: int = 140) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def speech(tmp: Path, parts: list[str], *, pause_s: float = 1.0, rate: int = 16000,
           channels: int = 1, voice: str = "en-us", speed: int = 140,
           lead_s: float = 0.3) -> Path:
    """A recording of `parts` spoken one after another with `pause_s` of silence between."""
    chunks: list[np.ndarray] = []
    sr = 22050
    for i, text in enumerate(parts):
        data, sr = sf.read(espeak(text, tmp / f"part{i}-{uuid.uuid4().hex[:6]}.wav", voice=voice,
                                  speed=speed))
        loud = np.flatnonzero(np.abs(data) > 0.01)  # espeak pads with silence; pauses are ours
        data = data[loud[0] : loud[-1] + 1]
        if i:
            chunks.append(np.zeros(int(sr * pause_s)))
        chunks.append(data)
    lead = np.zeros(int(sr * lead_s))
    audio = np.concatenate([lead, *chunks, lead])
    if rate != sr:
        from sarai.audio.pcm import resample

        audio = resample(audio.astype(np.float32), sr, rate)
    if channels > 1:
        audio = np.stack([audio] * channels, axis=1)
    out = tmp / f"speech-{uuid.uuid4().hex[:8]}.wav"
    sf.write(out, audio, rate, subtype="PCM_16")
    return out


@pytest.fixture
def make_speech(tmp_path: Path):
    def _make(parts: list[str], **kw) -> Path:
        return speech(tmp_path, parts, **kw)

    return _make


@pytest.fixture
def sarai_env(tmp_path: Path, models_dir: Path) -> dict[str, str]:
    """Environment for running the `sarai` command: a clean config home, the shared models."""
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["XDG_DATA_HOME"] = str(models_dir.parent.parent)
    env.pop("SARAI_CONFIG", None)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def sarai(sarai_env: dict[str, str]):
    """Run the real `sarai` command in a subprocess."""

    def _run(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "sarai.daemon.cli", *args],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env or sarai_env,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return _run


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseRoom]:
    """PulseAudio null sinks: the room (its monitor is the microphone) and the speaker."""
    room = PulseRoom.create()
    try:
        yield room
    finally:
        room.close()


class StreamSpy:
    """Records every prompt sent to a registry's real backends (patch `registry.backend`
    with `spy.backend`); `on_call()` runs as each one is sent."""

    def __init__(self, registry, on_call=None) -> None:
        self.calls: list[tuple[list, int]] = []
        self._backend = registry.backend
        self._borrow = registry.borrow
        self._on_call = on_call

    def backend(self, tier, **kw):
        return self._recorded(self._backend(tier, **kw))

    @contextlib.contextmanager
    def borrow(self, tier):
        """Patch `registry.borrow` with this for what priming sends."""
        with self._borrow(tier) as real:
            yield None if real is None else self._recorded(real)

    def _recorded(self, real):
        spy = self

        class Recorded:
            def stream(self, messages, *, max_tokens, **kw):
                if spy._on_call is not None:
                    spy._on_call()
                spy.calls.append(([(m.role, m.content) for m in messages], max_tokens))
                yield from real.stream(messages, max_tokens=max_tokens, **kw)

        return Recorded()


def wait_until(cond, timeout: float = 20.0) -> bool:
    """Poll `cond` until it is true or `timeout` seconds pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture(scope="session")
def recordings() -> Path:
    """Recorded human speech and music (tests/recordings.py): the Asterisk prompts and music
    from Debian packages (`make setup`), pocketsphinx's recordings fetched into a cache."""
    from recordings import fetch as fetch_recordings
    from recordings import missing_packages

    missing = missing_packages()
    if missing:
        pytest.fail(f"recorded speech is missing: apt-get install {' '.join(missing)}"
                    " (make setup installs it)")
    return fetch_recordings()
