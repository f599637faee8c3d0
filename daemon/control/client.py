"""The control socket's client: what the CLI and the tray use to talk to the daemon."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sarai.daemon.control.wire import ControlError, DaemonNotRunning, encode

BUSY = "busy"  # protocol.ErrorCode.BUSY, without importing the request models


class ControlClient:
    """A connection to the daemon: call(cmd, ...) → reply, or events() after subscribe().

    Connecting waits (up to `connect_timeout`) while the daemon's accept queue is full or it
    says it is serving too many clients, instead of failing at the first refusal.
    """

    def __init__(self, path: Path, timeout: float = 30.0, connect_timeout: float = 10.0) -> None:
        self.path = path
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._sock, self._reader = self._connect()

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        deadline = time.monotonic() + self._connect_timeout
        pause = 0.005
        while True:
            try:
                sock = _connect_once(self.path, deadline)
            except BlockingIOError as exc:  # the accept queue is full: wait, try again
                if time.monotonic() >= deadline:
                    raise ControlError(f"SARAi is too busy to answer on {self.path}; "
                                       "try again in a moment") from exc
            else:
                sock.settimeout(self._timeout)
                return sock, sock.makefile("rb")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

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
        try:
            self._sock.sendall(line)
        except TimeoutError as exc:
            raise ControlError("SARAi did not take the request in time") from exc
        except OSError:
            pass  # the daemon closed the connection; its reply (a refusal) says why

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
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise ControlError(f"SARAi sent something that is not JSON: {line[:80]!r}") from exc
        if not isinstance(reply, dict):
            raise ControlError(f"SARAi sent something that is not a reply: {line[:80]!r}")
        return reply

    def call(self, cmd: str, *, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one command; the reply's data, or ControlError with the daemon's message."""
        line = encode({"cmd": cmd, **args})
        deadline = time.monotonic() + self._connect_timeout
        pause = 0.01
        while True:
            self.send_line(line)
            reply = self.read_reply(timeout)
            # "busy" comes before the daemon reads anything, so sending again is safe.
            if reply.get("code") != BUSY or time.monotonic() >= deadline:
                break
            self.close()
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
            self._sock, self._reader = self._connect()
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


def _connect_once(path: Path, deadline: float) -> socket.socket:
    """A connected socket, or BlockingIOError when the daemon's accept queue is full.

    The connect itself blocks: Python's timeout mode would make it non-blocking, and a
    non-blocking connect to a Unix socket fails at once with EAGAIN while the accept queue
    is full. SO_SNDTIMEO bounds how long the kernel lets it wait for room in that queue.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    wait = max(0.01, deadline - time.monotonic())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                    struct.pack("ll", int(wait), int(wait % 1 * 1e6)))
    try:
        sock.connect(str(path))
    except BlockingIOError:
        sock.close()
        raise
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonNotRunning(
            f"SARAi is not running (nothing answers on {path}); start it with 'sarai run' "
            "or 'systemctl --user start sarai'") from exc
    except PermissionError as exc:
        sock.close()
        raise ControlError(f"not allowed to use {path}: it belongs to another user") from exc
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot reach SARAi on {path}: {exc}") from exc
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))
    return sock
