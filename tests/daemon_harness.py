"""Starting the real daemon (`sarai run`) for tests, as systemd would: with a NOTIFY_SOCKET
the test owns, a private XDG_RUNTIME_DIR, and the PulseAudio test devices."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import REPO
from sarai.daemon.control.client import ControlClient
from sarai.daemon.control.wire import socket_path


class RunningDaemon:
    def __init__(self, env: dict[str, str], runtime: Path, state_dir: Path,
                 args: tuple[str, ...] = (), journal: bool = False) -> None:
        self.runtime = runtime
        self.state_dir = state_dir
        self.sock = socket_path(runtime / "sarai")
        self.notes: list[str] = []  # sd_notify datagrams, in order
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._notify_path = runtime / "notify"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self._notify_path))
        self._notify.settimeout(0.5)
        self._closed = threading.Event()
        env = {**env, "XDG_RUNTIME_DIR": str(runtime), "NOTIFY_SOCKET": str(self._notify_path)}
        err_r, err_w = os.pipe()
        if journal:  # what systemd does: stderr is the journal's stream, named in the env
            st = os.fstat(err_w)
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        else:
            env.pop("JOURNAL_STREAM", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sarai.daemon.cli", "run", "--json", *args], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=err_w, text=True,
        )
        os.close(err_w)
        self._err = os.fdopen(err_r, "r", encoding="utf-8", errors="replace")
        self.pid = self.proc.pid
        for target in (self._read_notes, self._read_err, self._read_out):
            threading.Thread(target=target, daemon=True).start()

    def _read_notes(self) -> None:
        while not self._closed.is_set():
            try:
                self.notes.append(self._notify.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def _read_err(self) -> None:
        for line in self._err:
            self.stderr.append(line)

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)

    @property
    def log(self) -> str:
        return "".join(self.stderr)

    def wait_for(self, what: Callable[[], Any], timeout: float, why: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}) waiting for "
                                     f"{why}:\n{self.log}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {why}:\n{self.log}")

    def wait_ready(self, timeout: float = 240) -> None:
        self.wait_for(lambda: any("READY=1" in n for n in self.notes), timeout, "READY=1")

    def client(self, timeout: float = 120) -> ControlClient:
        return ControlClient(self.sock, timeout)

    def call(self, cmd: str, timeout: float = 120, **args: Any) -> dict[str, Any]:
        with self.client(timeout) as c:
            return c.call(cmd, **args)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        """Send `sig`; (exit status, seconds it took to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._closed.set()
        self._notify.close()


def isolated_env(home: Path, models_dir: Path, pulse) -> dict[str, str]:
    """The environment for a daemon of a test's own: config and state under `home`, the
    shared starter models, the PulseAudio test devices."""
    e = dict(os.environ)
    e.update({"XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state"),
              "XDG_DATA_HOME": str(models_dir.parent.parent), **pulse.env})
    e.pop("SARAI_CONFIG", None)
    return e


def short_runtime_dir() -> Path:
    """A private runtime dir with a short path (Unix socket paths are limited to 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="sarai-rt-", dir="/tmp"))
    os.chmod(d, 0o700)
    return d


def start_daemon(env: dict[str, str], *, config: str | None = None, ready: bool = True,
                 args: tuple[str, ...] = (), journal: bool = False) -> RunningDaemon:
    """`sarai run` with `env` (sarai_env + pulse.env), optionally a config.yaml first."""
    if config is not None:
        cfg = Path(env["XDG_CONFIG_HOME"]) / "sarai" / "config.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(config)
    runtime = short_runtime_dir()
    d = RunningDaemon(env, runtime, Path(env["XDG_STATE_HOME"]) / "sarai", args, journal)
    if ready:
        try:
            d.wait_ready()
        except BaseException:
            stop_daemon(d)
            raise
    return d


def stop_daemon(d: RunningDaemon) -> None:
    d.close()
    shutil.rmtree(d.runtime, ignore_errors=True)
