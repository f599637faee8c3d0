"""A PulseAudio server of a test's own, so it can be killed without harming others."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


class PrivatePulse:
    """A PulseAudio server of this test's own, so it can be killed without harming others."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
             "-L", f"module-native-protocol-unix socket={self.sock} auth-anonymous=1",
             "-L", "module-null-sink sink_name=room rate=16000 channels=1",
             "-L", "module-null-sink sink_name=speaker"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        env = {**self.env, "PATH": "/usr/bin:/bin"}
        for _ in range(100):
            if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError("private PulseAudio server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    @property
    def env(self) -> dict[str, str]:
        return {"PULSE_SERVER": f"unix:{self.sock}", "PULSE_SOURCE": "room.monitor",
                "PULSE_SINK": "speaker"}

    def play(self, wav: Path) -> None:
        subprocess.run(["paplay", "--device=room", str(wav)], env={**os.environ, **self.env},
                       check=True, timeout=30)
