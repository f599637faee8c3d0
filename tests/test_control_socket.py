"""The control socket on a real Unix socket: owner-only modes, peer credentials, bad input,
subscriptions. The server here runs with a small handler; the daemon's own commands are
exercised against the real daemon in test_daemon.py."""

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sarai.daemon.control.client import ControlClient
from sarai.daemon.control.hub import EventHub
from sarai.daemon.control.protocol import ModeRequest, StatusRequest
from sarai.daemon.control.server import CommandFailed, ControlServer
from sarai.daemon.control.wire import ControlError, DaemonNotRunning, socket_path
from sarai.daemon.events import Event, EventKind

MAX_LINE = 4096


class Served:
    def __init__(self, base: Path) -> None:
        self.hub = EventHub()
        self.requests = []
        self.path = socket_path(base / "sarai")
        self.server = ControlServer(self.path, self.handle, self.hub, self.greeting,
                                    max_line=MAX_LINE)

    def handle(self, req):
        self.requests.append(req)
        if isinstance(req, StatusRequest):
            return {"state": "listening"}
        if isinstance(req, ModeRequest):
            if req.mode == "push":
                raise CommandFailed("push mode is not available here")
            return {"mode": req.mode.value}
        raise RuntimeError("boom")

    def greeting(self):
        return [Event(EventKind.STATE, {"state": "listening", "message": None})]


@pytest.fixture
def base():
    # Unix socket paths are short (108 bytes), and the peer-credential test needs a
    # directory another user can traverse: pytest's tmp_path is neither.
    d = Path(tempfile.mkdtemp(prefix="sarai-ctl-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def served(base):
    s = Served(base)
    s.server.start()
    yield s
    s.server.close()


def raw(path: Path, payload: bytes, replies: int = 1, timeout: float = 10) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(payload)
        f = s.makefile("rb")
        return [json.loads(f.readline()) for _ in range(replies)]


def test_socket_and_directory_are_owner_only(served):
    st = served.path.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()
    assert stat.S_IMODE(served.path.parent.stat().st_mode) == 0o700


def test_a_loose_existing_directory_is_tightened(base):
    (base / "sarai").mkdir(mode=0o755)
    os.chmod(base / "sarai", 0o755)
    s = Served(base)
    s.server.start()
    try:
        assert stat.S_IMODE((base / "sarai").stat().st_mode) == 0o700
    finally:
        s.server.close()


def test_requests_get_replies_with_their_id(served):
    with ControlClient(served.path) as c:
        assert c.call("status")["state"] == "listening"
        assert c.call("mode", mode="wake") == {"ok": True, "mode": "wake"}
        with pytest.raises(ControlError, match="push mode is not available"):
            c.call("mode", mode="push")
    (reply,) = raw(served.path, b'{"cmd": "status", "id": "abc"}\n')
    assert reply == {"ok": True, "id": "abc", "state": "listening"}


def test_bad_input_gets_an_error_and_the_server_keeps_serving(served):
    huge = b'{"cmd": "status", "pad": "' + b"x" * (MAX_LINE * 3) + b'"}\n'
    payload = b"".join([
        b"{not json\n",
        b'{"cmd": "sing"}\n',
        b'{"cmd": "mode", "mode": "loud", "id": 5}\n',
        huge,
        b"\n",  # blank lines are ignored
        b'["status"]\n',
        b'{"cmd": "ask", "text": "x", "speak": true}\n',  # the handler crashes
        b'{"cmd": "status", "id": 6}\n',
    ])
    replies = raw(served.path, payload, replies=7)
    codes = [r.get("code") for r in replies]
    assert codes == ["bad_json", "unknown_command", "bad_request", "too_long", "bad_request",
                     "failed", None]
    assert replies[2]["id"] == 5
    assert "longer than 4 KiB" in replies[3]["error"]
    assert "internal error: RuntimeError: boom" in replies[5]["error"]
    assert replies[6] == {"ok": True, "id": 6, "state": "listening"}
    # …and new connections are still served.
    with ControlClient(served.path) as c:
        assert c.call("status")["ok"]


def test_a_huge_line_without_newline_does_not_stall_other_clients(served):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(served.path))
    s.sendall(b"y" * (MAX_LINE * 4))  # no newline yet: the server drains it in pieces
    with ControlClient(served.path) as c:
        assert c.call("status")["state"] == "listening"
    s.sendall(b"\n")
    reply = json.loads(s.makefile("rb").readline())
    assert reply["code"] == "too_long"
    s.close()


def test_subscribers_get_the_greeting_then_live_events(served):
    got: list[dict] = []
    ready = threading.Event()

    def follow():
        with ControlClient(served.path) as c:
            for ev in c.subscribe():
                got.append(ev)
                ready.set()
                if ev.get("event") == "turn":
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert ready.wait(10)
    served.hub.publish(Event(EventKind.MODE, {"mode": "wake"}))
    served.hub.publish(Event(EventKind.TURN, {"transcript": "hi", "reply": "hello"}))
    t.join(10)
    assert [e["event"] for e in got] == ["state", "mode", "turn"]
    assert got[1]["mode"] == "wake" and got[2]["reply"] == "hello"


def test_a_gone_subscriber_is_dropped(served):
    c = ControlClient(served.path)
    events = c.subscribe()
    assert next(events)["event"] == "state"
    c.close()
    deadline = time.monotonic() + 5
    while served.hub._listeners and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not served.hub._listeners


def test_no_daemon_is_one_clear_sentence(base):
    with pytest.raises(DaemonNotRunning, match="SARAi is not running .* start it with"):
        ControlClient(base / "sarai" / "control.sock")


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(base):
    first = Served(base)
    first.server.start()
    second = Served(base)
    try:
        with pytest.raises(ControlError, match="already running"):
            second.server.start()
        with ControlClient(first.path) as c:  # the running one is untouched
            assert c.call("status")["ok"]
    finally:
        first.server.close()
    # What a crashed daemon leaves behind: the socket file, with nobody listening on it.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(first.path))
    dead.close()
    assert first.path.exists()
    second.server.start()
    try:
        with ControlClient(second.path) as c:
            assert c.call("status")["ok"]
    finally:
        second.server.close()


def test_an_overlong_socket_path_is_a_clear_error():
    s = ControlServer(Path("/tmp/" + "d" * 120) / "control.sock", lambda r: {}, EventHub(),
                      list)
    with pytest.raises(ControlError, match="too long for a Unix socket"):
        s.start()


_OTHER_USER_CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print(json.dumps({"connect": "denied"}))
    sys.exit(0)
s.sendall(b'{"cmd": "status"}\\n')
line = s.makefile("rb").readline()
print(json.dumps({"connect": "ok", "reply": json.loads(line) if line else None}))
"""


def _as_nobody(path: Path) -> dict:
    if shutil.which("setpriv") is None or os.getuid() != 0:
        pytest.skip("needs root and setpriv to connect as another user")
    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "/usr/bin/python3", "-c", _OTHER_USER_CLIENT, str(path)],
        capture_output=True, text=True, timeout=30,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_another_user_cannot_reach_the_socket(served):
    assert _as_nobody(served.path) == {"connect": "denied"}
    assert served.requests == []


def test_another_user_is_refused_even_if_the_modes_were_loosened(served):
    # Simulate a mistake (or a hostile chmod): the file modes no longer protect the socket.
    os.chmod(served.path.parent, 0o755)
    os.chmod(served.path, 0o666)
    result = _as_nobody(served.path)
    assert result["connect"] == "ok"
    assert result["reply"]["ok"] is False and result["reply"]["code"] == "forbidden"
    assert served.requests == []  # the request was never read
    with ControlClient(served.path) as c:  # the owner still is served
        assert c.call("status")["ok"]
