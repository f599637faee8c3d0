"""The control socket under abuse, on a real Unix socket: deep nesting, loose types, crashing
commands, hundreds of clients at once, idle and half-sent connections, subscribers that stop
reading. The server runs with a small handler (the server is what is tested here); the
daemon's own commands are exercised in test_daemon.py."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import wait_until
from sarai.daemon.control.client import ControlClient
from sarai.daemon.control.hub import EventHub
from sarai.daemon.control.protocol import (
    MAX_DEPTH,
    ErrorCode,
    ForgetRequest,
    HistoryRequest,
    ProtocolError,
    StatusRequest,
    nesting_depth,
    parse_request,
)
from sarai.daemon.control.server import ControlServer
from sarai.daemon.control.wire import ControlError, socket_path
from sarai.daemon.events import Event, EventKind


class Served:
    def __init__(self, base: Path, **kw) -> None:
        self.hub = EventHub()
        self.requests: list = []
        self.delay_s = 0.0
        self.path = socket_path(base / "sarai")
        self.server = ControlServer(self.path, self.handle, self.hub, self.greeting, **kw)

    def handle(self, req):
        self.requests.append(req)
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(req, StatusRequest):
            return {"state": "listening"}
        if isinstance(req, ForgetRequest):
            return {"log_deleted": req.log}
        if isinstance(req, HistoryRequest):
            return {"turns": [], "not_json": {1, 2}}  # a set: a reply that cannot be encoded
        raise ZeroDivisionError("boom")

    def greeting(self):
        return [Event(EventKind.STATE, {"state": "listening", "message": None})]


@pytest.fixture
def base():
    d = Path(tempfile.mkdtemp(prefix="sarai-lim-", dir="/tmp"))  # socket paths are short
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def thread_errors(monkeypatch):
    """Exceptions that escaped any thread (they would otherwise only reach stderr)."""
    seen: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


@pytest.fixture
def make(base):
    started: list[Served] = []

    def _make(**kw) -> Served:
        s = Served(base, **kw)
        s.server.start()
        started.append(s)
        return s

    yield _make
    for s in started:
        s.server.close()


def connect(path: Path, timeout: float = 10) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def ask(path: Path, payload: bytes, replies: int = 1) -> list[dict]:
    with connect(path) as s:
        s.sendall(payload)
        f = s.makefile("rb")
        return [json.loads(f.readline()) for _ in range(replies)]


def status_ok(path: Path) -> bool:
    with ControlClient(path, timeout=10) as c:
        return c.call("status")["state"] == "listening"


# --- what a request line may be -------------------------------------------------------------


def test_nesting_50000_deep_is_refused_before_parsing(make, thread_errors):
    served = make()
    deep = b'{"cmd": "status", "x": ' + b"[" * 25_000 + b"]" * 25_000 + b"}\n"
    assert len(deep) < 64 * 1024  # under the size cap: only the depth check stops it
    (reply,) = ask(served.path, deep)
    assert reply["ok"] is False and reply["code"] == "bad_request"
    assert f"nested deeper than {MAX_DEPTH} levels" in reply["error"]
    assert served.requests == [] and thread_errors == []
    assert status_ok(served.path)


def test_nesting_depth_ignores_brackets_inside_strings():
    assert nesting_depth(b'{"a": "[[[[{{{{\\"]]]]"}') == 1
    assert nesting_depth(b'{"a": [{"b": [1]}]}') == 4
    assert nesting_depth(b"[" * 10_000, stop_at=MAX_DEPTH) == MAX_DEPTH + 1
    ok = b'{"cmd": "ask", "text": "[[[[[[[[[[[[", "attachments": [{"path": "/a.png"}]}'
    assert parse_request(ok).attachments[0].path == "/a.png"


@pytest.mark.parametrize(("line", "field"), [
    (b'{"cmd": "forget", "log": "yes"}', "log"),
    (b'{"cmd": "forget", "log": 1}', "log"),
    (b'{"cmd": "history", "limit": "5"}', "limit"),
    (b'{"cmd": "history", "limit": 5.0}', "limit"),
    (b'{"cmd": "history", "limit": true}', "limit"),
    (b'{"cmd": "ask", "text": "hi", "speak": "false"}', "speak"),
    (b'{"cmd": "ask", "text": 42}', "text"),
    (b'{"cmd": "ask", "text": "hi", "attachments": [{"path": 7}]}', "attachments.0.path"),
    (b'{"cmd": "models", "action": "load", "tier": "tiny", "long_context": "no"}',
     "long_context"),
])
def test_types_are_strict(line, field):
    with pytest.raises(ProtocolError) as err:
        parse_request(line)
    assert err.value.code is ErrorCode.BAD_REQUEST
    assert str(err.value).startswith(f"{field}: ")


def test_a_string_for_a_boolean_never_reaches_the_command(make):
    served = make()
    (refused, done) = ask(served.path, b'{"cmd": "forget", "log": "yes", "id": 1}\n'
                                       b'{"cmd": "forget", "log": false, "id": 2}\n', 2)
    assert refused["code"] == "bad_request" and refused["id"] == 1
    assert "log: Input should be a valid boolean" in refused["error"]
    assert done == {"ok": True, "id": 2, "log_deleted": False}
    assert served.requests == [ForgetRequest(log=False, id=2)]


def test_enum_and_list_fields_still_take_their_json_forms():
    req = parse_request(b'{"cmd": "ask", "text": "x", "attachments": '
                        b'[{"path": "/a.wav", "kind": "audio"}], "id": 3}')
    assert req.attachments[0].kind == "audio" and req.id == 3
    assert parse_request(b'{"cmd": "mode", "mode": "wake"}').mode == "wake"


def test_an_integer_too_long_to_parse_is_bad_json_not_a_crash():
    with pytest.raises(ProtocolError) as err:
        parse_request(b'{"cmd": "history", "limit": ' + b"9" * 5000 + b"}")
    assert err.value.code is ErrorCode.BAD_JSON


def test_every_command_error_is_answered_and_logged(make, caplog, thread_errors):
    served = make()
    with caplog.at_level(logging.INFO, logger="sarai.daemon.control.server"):
        crash, unencodable, after = ask(
            served.path, b'{"cmd": "mute", "id": 1}\n{"cmd": "history", "id": 2}\n'
                         b'{"cmd": "status", "id": 3}\n', 3)
    assert crash == {"ok": False, "id": 1, "code": "failed",
                     "error": "internal error: ZeroDivisionError: boom"}
    assert unencodable["ok"] is False and unencodable["id"] == 2
    assert "not JSON" in unencodable["error"]
    assert after == {"ok": True, "id": 3, "state": "listening"}
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.exc_info[0] for r in logged] == [ZeroDivisionError, TypeError]
    assert "control command mute failed" in logged[0].getMessage()
    assert thread_errors == []


# --- many clients ---------------------------------------------------------------------------


def test_250_concurrent_clients_all_get_their_reply(make):
    served = make()
    served.delay_s = 0.01
    with ThreadPoolExecutor(250) as pool:
        results = list(pool.map(lambda _: status_ok(served.path), range(250)))
    assert results == [True] * 250
    assert len(served.requests) == 250


def test_clients_beyond_the_connection_limit_are_told_and_the_client_retries(make, caplog):
    served = make(max_connections=8)
    served.delay_s = 0.02
    with caplog.at_level(logging.WARNING, logger="sarai.daemon.control.server"), \
            ThreadPoolExecutor(100) as pool:
        results = list(pool.map(lambda _: status_ok(served.path), range(100)))
    assert results == [True] * 100
    assert any("8 already open" in r.getMessage() for r in caplog.records)  # refusals happened


def test_idle_connections_cost_no_threads_and_the_limit_refuses_clearly(make):
    served = make(max_connections=64, idle_timeout_s=2.0)
    threads_before = threading.active_count()
    socks = [connect(served.path) for _ in range(200)]
    try:
        assert wait_until(lambda: served.server.connections >= 64, 10)
        # Only the server's own threads: the selector and, lazily, its workers.
        assert threading.active_count() - threads_before <= 16
        refused = []
        for s in socks[64:]:
            line = s.makefile("rb").readline()
            refused.append(json.loads(line))
        assert {r["code"] for r in refused} == {"busy"}
        assert "64 connections already" in refused[0]["error"]
        # The idle ones are closed after idle_timeout_s, and room is made for real clients.
        assert socks[0].makefile("rb").readline() == b""
        assert status_ok(served.path)
    finally:
        for s in socks:
            s.close()


def test_half_a_line_is_dropped_after_the_line_timeout(make):
    served = make(line_timeout_s=0.5)
    with connect(served.path) as slow:
        slow.sendall(b'{"cmd": "sta')
        assert status_ok(served.path)  # others are served meanwhile
        f = slow.makefile("rb")
        reply = json.loads(f.readline())
        assert reply["code"] == "timeout" and "not finished within 0.5 s" in reply["error"]
        assert f.readline() == b""  # and the connection is closed
    assert served.requests == [StatusRequest()]


def test_a_subscriber_that_stops_reading_is_dropped(make):
    served = make(write_timeout_s=0.5)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(str(served.path))
    s.sendall(b'{"cmd": "subscribe"}\n')
    assert wait_until(lambda: len(served.hub._listeners) == 1, 5)
    big = "x" * 4000
    t0 = time.monotonic()
    while served.hub._listeners and time.monotonic() - t0 < 20:
        served.hub.publish(Event(EventKind.LOG, {"level": "info", "message": big}))
        time.sleep(0.005)
    assert not served.hub._listeners  # never read from: dropped, its listener removed
    assert status_ok(served.path)
    s.close()


def test_a_subscriber_that_falls_far_behind_is_dropped_at_once(make):
    served = make(max_pending=64 * 1024, write_timeout_s=60)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(served.path))
    s.sendall(b'{"cmd": "subscribe"}\n')
    assert wait_until(lambda: len(served.hub._listeners) == 1, 5)
    for _ in range(400):  # ~1.6 MB, far more than the socket buffers and max_pending hold
        served.hub.publish(Event(EventKind.LOG, {"level": "info", "message": "y" * 4000}))
    assert wait_until(lambda: not served.hub._listeners, 5)
    s.close()


def test_a_reply_in_progress_still_goes_out_when_the_server_closes(make):
    served = make()
    served.delay_s = 0.4
    with connect(served.path) as s:
        s.sendall(b'{"cmd": "status", "id": 9}\n')
        assert wait_until(lambda: served.requests, 5)
        served.server.close()
        assert json.loads(s.makefile("rb").readline()) == {"ok": True, "id": 9,
                                                            "state": "listening"}
    with pytest.raises(ControlError):
        ControlClient(served.path, connect_timeout=1)


def test_the_client_waits_for_a_full_accept_queue_instead_of_failing(base):
    # A listener that does not accept yet, with a backlog of 1: the queue fills at once.
    path = base / "q.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    for h in held:
        h.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # the queue is full, as at a busy daemon
            h.connect(str(path))
    accepted: list[socket.socket] = []

    def accept_later():
        time.sleep(0.5)
        srv.settimeout(2)
        while True:
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                return

    t = threading.Thread(target=accept_later, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        c = ControlClient(path, connect_timeout=10)  # waits until there is room
        waited = time.monotonic() - t0
        c.close()
        t.join(10)
        assert waited >= 0.3  # it did wait for the accept, rather than fail with EAGAIN
        assert len(accepted) >= 2
    finally:
        for s in [*held, *accepted, srv]:
            s.close()
    os.unlink(path)


def test_a_flood_of_requests_behind_a_slow_one_is_cut_off(make):
    served = make()
    served.delay_s = 1.0
    with connect(served.path) as s:
        s.sendall(b'{"cmd": "status"}\n' + b'{"cmd": "status"}\n' * 300)
        f = s.makefile("rb")
        reply = json.loads(f.readline())
        assert reply["code"] == "busy" and "more than 100 requests" in reply["error"]
    assert len(served.requests) <= 2  # the flood was never run
    assert status_ok(served.path)


def test_a_failing_greeting_ends_the_subscription_with_an_error(make):
    served = make()
    served.server._greeting = lambda: 1 / 0  # a bug in what a new subscriber is told first
    with connect(served.path) as s:
        s.sendall(b'{"cmd": "subscribe", "id": 4}\n')
        f = s.makefile("rb")
        reply = json.loads(f.readline())
        assert reply == {"ok": False, "id": 4, "code": "failed",
                         "error": "internal error: ZeroDivisionError: division by zero"}
        assert f.readline() == b""
    assert wait_until(lambda: not served.hub._listeners, 5)
