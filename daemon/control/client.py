"""The control socket's client: what the CLI and the tray use to talk to the daemon."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sarai.daemon.control.wire import ControlError, DaemonNotRunning, encode


class ControlClient:
    """A connection to the daemon: call(cmd, ...) → reply, or events() after subscribe()."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self._sock.close()
            raise DaemonNotRunning(
                f"SARAi is not running (nothing answers on {path}); start it with 'sarai run' "
                "or 'systemctl --user start sarai'") from exc
        except PermissionError as exc:
            self._sock.close()
            raise ControlError(f"not allowed to use {path}: it belongs to another user") from exc
        except OSError as exc:
            self._sock.close()
            raise ControlError(f"cannot reach SARAi on {path}: {exc}") from exc
        self._reader = self._sock.makefile("rb")

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # Shut the socket down first: it wakes a thread blocked reading events, which would
        # otherwise hold the reader's lock and make close() wait forever.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._reader.close()
        self._sock.close()

    def send_line(self, line: bytes) -> None:
        self._sock.sendall(line)

    def read_reply(self, timeout: float | None = None) -> dict[str, Any]:
        if timeout is not None:
            self._sock.settimeout(timeout)
        try:
            line = self._reader.readline()
        except TimeoutError as exc:
            raise ControlError("SARAi did not answer in time") from exc
        except OSError as exc:
            raise ControlError(f"the connection to SARAi broke: {exc}") from exc
        if not line:
            raise ControlError("SARAi closed the connection (it may be shutting down)")
        return json.loads(line)

    def call(self, cmd: str, *, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one command; the reply's data, or ControlError with the daemon's message."""
        self.send_line(encode({"cmd": cmd, **args}))
        reply = self.read_reply(timeout)
        if not reply.get("ok"):
            raise ControlError(reply.get("error") or "the request failed")
        return reply

    def subscribe(self) -> Iterator[dict[str, Any]]:
        """Live events, starting with the current state, mode and residency."""
        self.call("subscribe")
        self._sock.settimeout(None)
        while True:
            try:
                ev = self.read_reply()
            except ControlError:
                return
            yield ev
