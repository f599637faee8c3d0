"""Starting (and restarting) the daemon from the tray.

Through the systemd user service when it is installed, so it is supervised and logs to the
journal; otherwise as a background `sarai run` of this installation, detached from the tray
(it logs to its own log file).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from sarai.daemon.control.client import ControlClient
from sarai.daemon.control.wire import ControlError, DaemonNotRunning
from sarai.daemon.service.unit import UNIT_NAME, ServicePaths, sarai_command, systemctl
from sarai.daemon.tray.app import TrayError

_STOP_WAIT_S = 30.0


def _service_installed() -> bool:
    return ServicePaths.from_env().unit.is_file()


def start_daemon(config: Path | None = None) -> str:
    """Start SARAi; how it was started, or TrayError saying why it could not be."""
    if _service_installed():
        ok, out = systemctl("start", UNIT_NAME)
        if ok:
            return "systemctl --user start sarai"
        # The unit is there but the user manager cannot start it (no session manager): a
        # plain background process still gets SARAi going.
        fallback = f"the user service did not start ({out.splitlines()[-1] if out else '?'})"
    else:
        fallback = ""
    cmd = shlex.split(sarai_command())
    if config is not None:
        cmd += ["--config", str(config)]
    cmd.append("run")
    try:
        subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise TrayError(f"cannot run {' '.join(cmd)}: {exc}") from exc
    return " ".join(cmd) + (f" ({fallback})" if fallback else "")


def restart_daemon(sock: Path, config: Path | None = None) -> str:
    """Stop the running SARAi (if any) and start it again."""
    if _service_installed():
        ok, out = systemctl("is-active", UNIT_NAME)
        if ok and out.strip() == "active":
            ok, out = systemctl("restart", UNIT_NAME)
            if ok:
                return "systemctl --user restart sarai"
    try:
        with ControlClient(sock, timeout=10) as c:
            c.call("quit")
    except DaemonNotRunning:
        pass
    except ControlError as exc:
        raise TrayError(f"cannot stop SARAi to restart it: {exc}") from exc
    deadline = time.monotonic() + _STOP_WAIT_S
    while time.monotonic() < deadline:
        try:
            ControlClient(sock, timeout=2).close()
        except DaemonNotRunning:
            break
        except ControlError:
            pass
        time.sleep(0.3)
    else:
        raise TrayError("SARAi did not stop within 30 s; not started again")
    return start_daemon(config)
