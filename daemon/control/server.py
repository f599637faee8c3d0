"""The control socket's server, inside the daemon.

Only the user who runs the daemon may use it. The directory is 0700 and the socket 0600, and
because file modes can be loosened by mistake, every connection's peer credentials
(SO_PEERCRED) are checked as well: another user's connection gets a refusal and is closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sarai.daemon.control.protocol import (
    ErrorCode,
    ProtocolError,
    Request,
    SubscribeRequest,
    encode,
    error_reply,
    ok_reply,
    parse_request,
)
from sarai.daemon.control.hub import EventHub
from sarai.daemon.control.wire import ControlError
from sarai.daemon.events import Event

log = logging.getLogger(__name__)

Handler = Callable[[Request], dict[str, Any]]
_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path) on Linux, terminating NUL included
_SUBSCRIBER_QUEUE = 2000  # events a slow subscriber may fall behind before it is dropped


class CommandFailed(Exception):
    """A valid request that could not be carried out; str() goes back to the client."""


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process on the other end of a Unix socket."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ControlError(f"{path} belongs to another user; refusing to put the socket there")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


class ControlServer:
    """Serves JSON-lines requests on a Unix socket, one thread per connection."""

    def __init__(self, path: Path, handler: Handler, hub: EventHub,
                 greeting: Callable[[], list[Event]], max_line: int = 64 * 1024) -> None:
        self.path = path
        self._handler = handler
        self._hub = hub
        self._greeting = greeting
        self._max_line = max_line
        self._uid = os.getuid()
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if len(os.fsencode(self.path)) >= _SUN_PATH_MAX:
            raise ControlError(f"the control socket path {self.path} is too long for a Unix "
                               "socket; set XDG_RUNTIME_DIR to a shorter directory")
        _private_dir(self.path.parent)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise ControlError(f"SARAi is already running (its control socket {self.path} "
                                   "answers); stop it first with 'sarai quit'")
            self.path.unlink()  # left behind by a daemon that crashed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(16)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()
        log.info("control socket listening on %s", self.path)

    def close(self) -> None:
        self._closed.set()
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # --- connections ------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), name="control-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            pid, uid, _ = peer_credentials(conn)
            if uid != self._uid:
                log.warning("refused a control connection from uid %d (pid %d)", uid, pid)
                self._send(conn, error_reply(ErrorCode.FORBIDDEN,
                                             "this SARAi belongs to another user"))
                return
            reader = conn.makefile("rb")
            while not self._closed.is_set():
                line, too_long = self._read_line(reader)
                if line is None:
                    return
                if too_long:
                    self._send(conn, error_reply(
                        ErrorCode.TOO_LONG,
                        f"request longer than {self._max_line // 1024} KiB; nothing was done"))
                    continue
                if line.strip() and self._one(conn, line):
                    return  # a subscription ended
        except OSError as exc:
            log.debug("control connection ended: %s", exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _read_line(self, reader) -> tuple[bytes | None, bool]:
        """(line, too_long); line None at end of stream. An over-long line is drained."""
        line = reader.readline(self._max_line + 1)
        if not line:
            return None, False
        if len(line) <= self._max_line or line.endswith(b"\n"):
            return line, False
        while True:  # skip the rest of the oversized line, in bounded pieces
            more = reader.readline(self._max_line)
            if not more or more.endswith(b"\n"):
                return b"", True

    def _one(self, conn: socket.socket, line: bytes) -> bool:
        """Answer one request line; True when the connection is finished (after subscribe)."""
        try:
            req = parse_request(line)
        except ProtocolError as exc:
            self._send(conn, error_reply(exc.code, str(exc), exc.request_id))
            return False
        if isinstance(req, SubscribeRequest):
            self._stream_events(conn, req)
            return True
        if self._closed.is_set():
            self._send(conn, error_reply(ErrorCode.STOPPING, "SARAi is shutting down", req.id))
            return False
        try:
            reply = ok_reply(req.id, **self._handler(req))
        except CommandFailed as exc:
            reply = error_reply(ErrorCode.FAILED, str(exc), req.id)
        except Exception as exc:  # a bug in one command must not take the socket down
            log.exception("control command %s failed", req.cmd)
            reply = error_reply(ErrorCode.FAILED, f"internal error: {type(exc).__name__}: {exc}",
                                req.id)
        self._send(conn, reply)
        return False

    # --- subscriptions ----------------------------------------------------------------

    def _stream_events(self, conn: socket.socket, req: SubscribeRequest) -> None:
        """Send every event to this connection until it closes or falls too far behind."""
        events: queue.Queue[Event | None] = queue.Queue(_SUBSCRIBER_QUEUE)

        def listener(ev: Event) -> None:
            try:
                events.put_nowait(ev)
            except queue.Full:
                with contextlib.suppress(queue.Full):
                    events.get_nowait()
                    events.put_nowait(None)  # tells the writer to drop this subscriber

        unsubscribe = self._hub.subscribe(listener)
        try:
            self._send(conn, ok_reply(req.id, subscribed=True))
            for ev in self._greeting():
                self._send(conn, ev.as_dict())
            while not self._closed.is_set():
                try:
                    ev = events.get(timeout=0.5)
                except queue.Empty:
                    if _peer_closed(conn):
                        return
                    continue
                if ev is None:
                    log.warning("dropped a control subscriber that fell behind")
                    return
                self._send(conn, ev.as_dict())
        finally:
            unsubscribe()

    def _send(self, conn: socket.socket, obj: dict[str, Any]) -> None:
        conn.sendall(encode(obj))


def _peer_closed(conn: socket.socket) -> bool:
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(4096) == b""  # anything sent after subscribe is ignored
    except OSError:
        return True


def _answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()
