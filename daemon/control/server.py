"""The control socket's server, inside the daemon.

Only the user who runs the daemon may use it. The directory is 0700 and the socket 0600, and
because file modes can be loosened by mistake, every connection's peer credentials
(SO_PEERCRED) are checked as well: another user's connection gets a refusal and is closed.

One thread watches every connection with a selector: it accepts, reads request lines,
parses them and writes replies and events, never blocking on a client. Commands run on a
small pool of worker threads (an `ask` can take a minute), one at a time per connection, so
replies come back in order. What a misbehaving client can cost is bounded: at most
`max_connections` connections (the next one is told so and closed), a line must be finished
within `line_timeout_s`, output that a client does not read for `write_timeout_s` (or that
piles up past `max_pending`) gets it dropped, and a connection that has been silent for
`idle_timeout_s` without a subscription is closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sarai.daemon.control.hub import EventHub
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
from sarai.daemon.control.wire import ControlError
from sarai.daemon.events import Event

log = logging.getLogger(__name__)

Handler = Callable[[Request], dict[str, Any]]
_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path) on Linux, terminating NUL included
_TICK_S = 0.25  # how often timeouts are looked at
_CLOSE_GRACE_S = 1.0  # how long close() lets replies in progress finish and go out
_MAX_WAITING = 100  # request lines one connection may have waiting behind a running command


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


@dataclass(eq=False)
class _Conn:
    """One client, as the selector thread sees it (only that thread touches it)."""

    sock: socket.socket
    pid: int
    inbuf: bytearray = field(default_factory=bytearray)
    line_started: float | None = None  # when the unfinished line in `inbuf` began
    discarding: bool = False  # inside a line longer than the cap, skipping to its end
    lines: deque[bytes] = field(default_factory=deque)  # complete lines not yet answered
    busy: bool = False  # a command of this connection is with a worker
    out: bytearray = field(default_factory=bytearray)
    stalled_since: float | None = None  # output waiting with no progress since then
    last_seen: float = field(default_factory=time.monotonic)
    unsubscribe: Callable[[], None] | None = None
    closing: bool = False  # close once `out` is sent
    linger_until: float | None = None  # closing, sent: waits for the client to hang up
    closed: bool = False


class _Subscription:
    """Events for one subscriber; those published before its greeting went out are held."""

    def __init__(self, post: Callable[[bytes], None]) -> None:
        self._post = post
        self._lock = threading.Lock()
        self._held: list[bytes] | None = []

    def __call__(self, ev: Event) -> None:
        data = encode(ev.as_dict())
        with self._lock:
            if self._held is not None:
                self._held.append(data)
                return
        self._post(data)

    def release(self, first: bytes) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            self._post(first + b"".join(held))


class ControlServer:
    """Serves JSON-lines requests on a Unix socket (see the module docstring for the limits)."""

    def __init__(self, path: Path, handler: Handler, hub: EventHub,
                 greeting: Callable[[], list[Event]], max_line: int = 64 * 1024, *,
                 max_connections: int = 128, workers: int = 16, line_timeout_s: float = 10.0,
                 write_timeout_s: float = 10.0, idle_timeout_s: float = 60.0,
                 max_pending: int = 1 << 20) -> None:
        self.path = path
        self._handler = handler
        self._hub = hub
        self._greeting = greeting
        self._max_line = max_line
        self._max_conns = max_connections
        self._line_timeout = line_timeout_s
        self._write_timeout = write_timeout_s
        self._idle_timeout = idle_timeout_s
        self._max_pending = max_pending
        self._uid = os.getuid()
        self._workers = workers
        self._sock: socket.socket | None = None
        self._conns: dict[int, _Conn] = {}  # by file descriptor
        self._posted: queue.SimpleQueue[tuple[_Conn, bytes, bool, bool]] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._refusals_since: float | None = None  # a refusal for being full was logged
        self._refusals = 0  # … and this many more since

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
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
        self._sock = sock
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="control-cmd")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)
        self._thread.start()
        log.info("control socket listening on %s", self.path)

    def close(self) -> None:
        """Stop serving: replies already being written get a moment to go out."""
        self._closed.set()
        if self._thread is None:
            return
        self._wake()
        self._thread.join(_CLOSE_GRACE_S + 2)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def connections(self) -> int:
        """How many clients are connected now."""
        return len(self._conns)

    # --- the selector thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    self._turn(_TICK_S)
                except Exception:  # never expected; logged, and the socket keeps serving
                    log.exception("the control socket hit an unexpected error")
                    time.sleep(_TICK_S)
            self._finish()
        finally:
            for conn in list(self._conns.values()):
                self._drop(conn)
            with contextlib.suppress(OSError):
                self._sel.close()
            for s in (self._sock, self._wake_r, self._wake_w):
                if s is not None:
                    s.close()

    def _turn(self, timeout: float) -> None:
        for key, events in self._sel.select(timeout):
            if key.fileobj is self._sock:
                self._accept()
            elif key.fileobj is self._wake_r:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
            else:
                conn: _Conn = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        self._write(conn)
                    if events & selectors.EVENT_READ and not conn.closed:
                        self._read(conn)
                except Exception:  # a bug with one client must not stop the others
                    log.exception("control connection from pid %d failed", conn.pid)
                    self._drop(conn)
        self._take_posted()
        self._check_timeouts()

    def _finish(self) -> None:
        """Let commands in progress answer (briefly), then flush what is left to send."""
        if self._sock is not None:  # new clients are refused from now on
            self._sel.unregister(self._sock)
            self._sock.close()
        deadline = time.monotonic() + _CLOSE_GRACE_S
        while time.monotonic() < deadline and any(
                c.busy or c.out for c in self._conns.values() if c.unsubscribe is None):
            self._turn(0.05)

    def _accept(self) -> None:
        assert self._sock is not None
        for _ in range(64):  # a burst of connections, without starving the others
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control socket accept failed: %s", exc)
                return
            try:
                sock.setblocking(False)
                pid, uid, _ = peer_credentials(sock)
            except OSError as exc:  # it hung up already
                log.debug("control connection lost at accept: %s", exc)
                sock.close()
                continue
            conn = _Conn(sock, pid)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)
            if uid != self._uid:
                log.warning("refused a control connection from uid %d (pid %d)", uid, pid)
                self._refuse(conn, ErrorCode.FORBIDDEN, "this SARAi belongs to another user")
            elif self._closed.is_set():
                self._refuse(conn, ErrorCode.STOPPING, "SARAi is shutting down")
            elif sum(not c.closing for c in self._conns.values()) > self._max_conns:
                self._note_refusal(pid)
                self._refuse(conn, ErrorCode.BUSY,
                             f"SARAi is serving {self._max_conns} connections already; "
                             "try again in a moment")

    def _note_refusal(self, pid: int) -> None:
        """Log a refusal for being full, once in a while: a retrying client makes many."""
        now = time.monotonic()
        if self._refusals_since is None:
            self._refusals_since = now
            log.warning("refused a control connection from pid %d: %d already open", pid,
                        self._max_conns)
        else:
            self._refusals += 1

    def _refuse(self, conn: _Conn, code: ErrorCode, message: str) -> None:
        self._queue(conn, encode(error_reply(code, message)))
        conn.closing = True
        self._write(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.debug("control connection from pid %d broke: %s", conn.pid, exc)
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        conn.last_seen = time.monotonic()
        if conn.closing or conn.unsubscribe is not None:
            return  # refused, or a subscriber: anything it sends is ignored
        self._split_lines(conn, data)
        if len(conn.lines) > _MAX_WAITING:
            log.warning("closed a control connection (pid %d) with more than %d requests "
                        "waiting", conn.pid, _MAX_WAITING)
            conn.lines.clear()
            self._queue(conn, encode(error_reply(
                ErrorCode.BUSY, f"more than {_MAX_WAITING} requests sent without waiting for "
                "the replies; closing the connection")))
            conn.closing = True
            self._write(conn)
            return
        self._next(conn)

    def _split_lines(self, conn: _Conn, data: bytes) -> None:
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            start = len(data) if end < 0 else end + 1
            if conn.line_started is None:
                conn.line_started = conn.last_seen
            if not conn.discarding:
                conn.inbuf += piece
                if len(conn.inbuf) > self._max_line:  # skip the rest of this line
                    conn.discarding = True
                    conn.inbuf.clear()
            if end < 0:
                return
            if conn.discarding:
                conn.lines.append(b"")  # placeholder: answered as "too long"
            elif conn.inbuf.strip():
                conn.lines.append(bytes(conn.inbuf))
            conn.inbuf.clear()
            conn.discarding = False
            conn.line_started = None

    def _next(self, conn: _Conn) -> None:
        """Answer this connection's next line, unless it is already waiting for one."""
        while conn.lines and not conn.busy and not conn.closed and conn.unsubscribe is None:
            line = conn.lines.popleft()
            if not line:
                self._queue(conn, encode(error_reply(
                    ErrorCode.TOO_LONG,
                    f"request longer than {self._max_line // 1024} KiB; nothing was done")))
                continue
            try:
                req = parse_request(line)
            except ProtocolError as exc:
                self._queue(conn, encode(error_reply(exc.code, str(exc), exc.request_id)))
                continue
            if self._closed.is_set():
                self._queue(conn, encode(error_reply(ErrorCode.STOPPING,
                                                     "SARAi is shutting down", req.id)))
                continue
            conn.busy = True
            if isinstance(req, SubscribeRequest):
                self._subscribe(conn, req)
            else:
                self._pool.submit(self._command, conn, req)

    def _subscribe(self, conn: _Conn, req: SubscribeRequest) -> None:
        sub = _Subscription(lambda data: self._post(conn, data, False))
        conn.unsubscribe = unsubscribe = self._hub.subscribe(sub)
        conn.lines.clear()

        def greet() -> None:
            try:
                first = encode(ok_reply(req.id, subscribed=True)) + b"".join(
                    encode(ev.as_dict()) for ev in self._greeting())
            except Exception as exc:
                log.exception("control subscription greeting failed")
                unsubscribe()
                self._post(conn, encode(error_reply(
                    ErrorCode.FAILED, f"internal error: {type(exc).__name__}: {exc}", req.id)),
                    True, close=True)
                return
            sub.release(first)
            self._post(conn, b"", True)

        self._pool.submit(greet)

    # --- output -----------------------------------------------------------------------

    def _queue(self, conn: _Conn, data: bytes) -> None:
        if conn.closed or not data:
            return
        if not conn.out:
            conn.stalled_since = time.monotonic()
        conn.out += data
        if len(conn.out) > self._max_pending:
            log.warning("dropped a control client (pid %d) that stopped reading: %d KiB "
                        "waiting", conn.pid, len(conn.out) // 1024)
            self._drop(conn)
            return
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out and not conn.closed:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("control connection from pid %d broke: %s", conn.pid, exc)
                self._drop(conn)
                return
            del conn.out[:sent]
            conn.stalled_since = time.monotonic()
        if conn.closed:
            return
        if not conn.out and conn.closing:
            self._hang_up(conn)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if self._sel.get_key(conn.sock).events != want:
            self._sel.modify(conn.sock, want, conn)

    def _hang_up(self, conn: _Conn) -> None:
        """Everything is sent: stop writing, and close once the client has read it and
        hung up (or after a moment). Closing at once could cut off what it was still
        sending, and the error it would then get could hide the line that says why."""
        if conn.linger_until is not None:
            return
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
        conn.linger_until = time.monotonic() + 2.0
        if self._sel.get_key(conn.sock).events != selectors.EVENT_READ:
            self._sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def _post(self, conn: _Conn, data: bytes, done: bool, *, close: bool = False) -> None:
        """From any thread: send `data` to `conn`; `done` when its command has finished,
        `close` to hang up after it."""
        self._posted.put((conn, data, done, close))
        self._wake()

    def _take_posted(self) -> None:
        while True:
            try:
                conn, data, done, close = self._posted.get_nowait()
            except queue.Empty:
                return
            self._queue(conn, data)
            if close and not conn.closed:
                conn.closing = True
                self._write(conn)
            elif done:
                conn.busy = False
                conn.last_seen = time.monotonic()
                self._next(conn)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        if self._refusals_since is not None and now - self._refusals_since > 10:
            if self._refusals:
                log.warning("refused %d more control connections in %.0f s (%d already open)",
                            self._refusals, now - self._refusals_since, self._max_conns)
            self._refusals_since, self._refusals = None, 0
        for conn in list(self._conns.values()):
            if conn.linger_until is not None:
                if now > conn.linger_until:
                    self._drop(conn)
            elif conn.out and conn.stalled_since is not None \
                    and now - conn.stalled_since > self._write_timeout:
                log.warning("dropped a control client (pid %d) that stopped reading for "
                            "%.0f s", conn.pid, self._write_timeout)
                self._drop(conn)
            elif conn.line_started is not None and now - conn.line_started > self._line_timeout:
                log.warning("closed a control connection (pid %d) that left a request "
                            "unfinished for %.0f s", conn.pid, self._line_timeout)
                conn.inbuf.clear()
                conn.line_started = None
                self._queue(conn, encode(error_reply(
                    ErrorCode.TIMEOUT, f"the request line was not finished within "
                    f"{self._line_timeout:g} s; closing the connection")))
                conn.closing = True
                self._write(conn)
            elif not conn.busy and conn.unsubscribe is None and not conn.out \
                    and now - conn.last_seen > self._idle_timeout:
                log.info("closed a control connection (pid %d) idle for %.0f s", conn.pid,
                         self._idle_timeout)
                self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        if conn.unsubscribe is not None:
            conn.unsubscribe()
        with contextlib.suppress(OSError):
            conn.sock.close()

    # --- worker threads ---------------------------------------------------------------

    def _command(self, conn: _Conn, req: Request) -> None:
        try:
            reply = ok_reply(req.id, **self._handler(req))
        except CommandFailed as exc:
            log.info("control command %s refused: %s", req.cmd, exc)
            reply = error_reply(ErrorCode.FAILED, str(exc), req.id)
        except Exception as exc:  # a bug in one command must not take the socket down
            log.exception("control command %s failed", req.cmd)
            reply = error_reply(ErrorCode.FAILED, f"internal error: {type(exc).__name__}: {exc}",
                                req.id)
        try:
            data = encode(reply)
        except (TypeError, ValueError) as exc:  # a reply that is not JSON is a bug too
            log.exception("control command %s gave a reply that is not JSON", req.cmd)
            data = encode(error_reply(ErrorCode.FAILED,
                                      f"internal error: the reply is not JSON: {exc}", req.id))
        self._post(conn, data, True)


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
