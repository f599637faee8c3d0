"""PulseAudio test devices: a null sink as "the room" (its monitor is the microphone) and one
as the speaker (its monitor lets a recording hear what SARAi said).

Used by the voice benchmark and the tests; a desktop with PulseAudio or PipeWire's pulse
server works too, and a PulseAudio server is started when none is running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sarai.audio.errors import AudioError


def _pactl(*args: str) -> str:
    proc = subprocess.run(["pactl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AudioError(f"pactl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def ensure_server() -> str:
    """The address of a running PulseAudio server, starting one if needed."""
    if shutil.which("pactl") is None or shutil.which("pulseaudio") is None:
        raise AudioError("PulseAudio is not installed (packages pulseaudio, pulseaudio-utils)")
    if subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1",
                        "--disallow-exit"], capture_output=True)
        for _ in range(50):
            if subprocess.run(["pactl", "info"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise AudioError("could not start a PulseAudio server")
    info = _pactl("info")
    server = next(line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("Server String:"))
    return f"unix:{server}" if server.startswith("/") else server


@dataclass
class PulseRoom:
    room: str
    speaker: str
    server: str
    modules: list[str]

    @classmethod
    def create(cls) -> PulseRoom:
        server = ensure_server()
        tag = uuid.uuid4().hex[:6]
        room, spk = f"sarai_room_{tag}", f"sarai_speaker_{tag}"
        mods = [
            _pactl("load-module", "module-null-sink", f"sink_name={room}", "rate=16000",
                   "channels=1").strip(),
            _pactl("load-module", "module-null-sink", f"sink_name={spk}").strip(),
        ]
        return cls(room, spk, server, mods)

    @property
    def env(self) -> dict[str, str]:
        # The server is named explicitly so a changed XDG_CONFIG_HOME does not hide it.
        return {"PULSE_SOURCE": f"{self.room}.monitor", "PULSE_SINK": self.speaker,
                "PULSE_SERVER": self.server}

    def use_in_this_process(self) -> None:
        """Make this process's default microphone and speaker the room's devices."""
        os.environ.update(self.env)

    def play(self, wav: Path) -> subprocess.Popen:
        return subprocess.Popen(["paplay", f"--device={self.room}", str(wav)],
                                env={**os.environ, "PULSE_SERVER": self.server})

    def record_speaker(self, out: Path) -> subprocess.Popen:
        return subprocess.Popen(
            ["parecord", f"--device={self.speaker}.monitor", "--rate=16000", "--channels=1",
             "--file-format=wav", str(out)],
            env={**os.environ, "PULSE_SERVER": self.server},
        )

    def loopback(self, latency_ms: int = 60) -> str:
        """Carry what the speaker plays back into the room (an acoustic echo path)."""
        mod = _pactl("load-module", "module-loopback", f"source={self.speaker}.monitor",
                     f"sink={self.room}", f"latency_msec={latency_ms}").strip()
        self.modules.append(mod)
        return mod

    def unload(self, module: str) -> None:
        subprocess.run(["pactl", "unload-module", module], capture_output=True)
        if module in self.modules:
            self.modules.remove(module)

    def close(self) -> None:
        for m in reversed(self.modules):
            subprocess.run(["pactl", "unload-module", m], capture_output=True)
        self.modules.clear()
