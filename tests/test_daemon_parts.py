"""The daemon's small parts on their own: restart with backoff, sd_notify on a real datagram
socket, journald-style logging, the turn log, the event hub."""

import json
import logging
import os
import socket
import stat
import sys
import threading
import time

import pytest

from sarai.daemon.control.hub import EventHub
from sarai.daemon.events import Event, EventKind
from sarai.daemon.service.logs import JournalFormatter, setup_logging, under_journal
from sarai.daemon.service.notify import Notifier
from sarai.daemon.service.parts import Restarter
from sarai.daemon.service.turn_log import TurnLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ThreadPart:
    """A part whose worker thread really runs, and dies when told to (or fails to start)."""

    name = "worker"

    def __init__(self, fail_starts: int = 0) -> None:
        self.fail_starts = fail_starts
        self.starts = 0
        self.stops = 0
        self._crash = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise OSError("device busy")
        self._crash.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._crash.wait()
        raise RuntimeError("worker crashed")  # an uncaught exception ends the thread

    def crash(self) -> None:
        self._crash.set()
        assert self._thread is not None
        self._thread.join(5)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        self.stops += 1


@pytest.fixture(autouse=True)
def quiet_thread_crashes(monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)


def test_a_dead_part_is_restarted_after_a_doubling_wait():
    clock, reports = Clock(), []
    part = ThreadPart()
    r = Restarter(part, lambda ok, s: reports.append((ok, s)), backoff_s=1, backoff_max_s=4,
                  stable_s=30, clock=clock)
    assert r.start() and r.running
    part.crash()
    r.check()
    assert not r.running and part.stops == 1
    assert reports[-1] == (False, "worker stopped unexpectedly; retrying in 1 s")
    clock.now += 0.5
    r.check()
    assert part.starts == 1  # not yet
    clock.now += 0.6
    r.check()
    assert part.starts == 2 and r.running and r.restarts == 1
    assert reports[-1] == (True, "worker restarted")
    part.crash()
    r.check()
    assert reports[-1][1].endswith("retrying in 2 s")  # failed again soon: wait longer


def test_failed_starts_back_off_up_to_the_maximum_then_relax_once_stable():
    clock, reports = Clock(), []
    part = ThreadPart(fail_starts=4)
    r = Restarter(part, lambda ok, s: reports.append(s), backoff_s=1, backoff_max_s=4,
                  stable_s=30, clock=clock)
    assert not r.start()
    waits = []
    while not r.running:
        waits.append(r.retry_in_s)
        clock.now += r.retry_in_s
        r.check()
    assert waits == [1, 2, 4, 4]
    assert r.last_error == "worker could not start: device busy"
    assert r.failures == 4 and r.restarts == 4
    clock.now += 31  # ran well for a while: the next failure waits the short time again
    r.check()
    part.crash()
    r.check()
    assert reports[-1].endswith("retrying in 1 s")


def test_stop_cancels_a_pending_restart():
    clock = Clock()
    part = ThreadPart(fail_starts=1)
    r = Restarter(part, lambda ok, s: None, clock=clock)
    r.start()
    r.stop(1.0)
    clock.now += 1000
    r.check()
    assert part.starts == 1 and not r.running


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    yield path, s
    s.close()


def test_notifier_speaks_the_sd_notify_protocol(notify_socket):
    path, s = notify_socket
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000",
                  "WATCHDOG_PID": str(os.getpid())})
    assert n.enabled and n.watchdog_s == 2.0
    assert n.ready("listening")
    assert s.recv(4096).decode().split("\n") == ["READY=1", "STATUS=listening",
                                                 f"MAINPID={os.getpid()}"]
    n.status("muted")
    assert s.recv(4096) == b"STATUS=muted"
    n.watchdog()
    assert s.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert s.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    n.close()


def test_notifier_reaches_an_abstract_socket():
    name = f"sarai-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("thinking")
        assert s.recv(4096) == b"STATUS=thinking"
    finally:
        s.close()


def test_notifier_is_silent_outside_systemd_and_survives_a_gone_manager(tmp_path):
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None and not n.ready("listening")
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled and not gone.status("listening")  # no exception


def test_watchdog_meant_for_another_process_is_ignored():
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    assert Notifier({"WATCHDOG_USEC": "garbage"}).watchdog_s is None


def test_journal_lines_carry_a_priority_and_no_timestamp():
    fmt = JournalFormatter()
    rec = logging.LogRecord("daemon.x", logging.WARNING, __file__, 1, "mic %s gone", ("a",),
                            None)
    assert fmt.format(rec) == "<4>daemon.x: mic a gone"
    rec = logging.LogRecord("daemon.x", logging.ERROR, __file__, 1, "two\nlines", (), None)
    assert fmt.format(rec) == "<3>daemon.x: two\n<3>lines"


def test_journal_stream_must_match_stderr(tmp_path):
    st = os.fstat(sys.stderr.fileno())
    assert under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not under_journal({})


def test_log_file_is_private_and_timestamped(tmp_path):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    log_file = tmp_path / "state" / "daemon.log"
    try:
        setup_logging(logging.INFO, journal=True, log_file=log_file)
        logging.getLogger("daemon.t").info("hello %s", "there")
        for h in root.handlers:
            h.flush()
        text = log_file.read_text()
        assert "INFO daemon.t: hello there" in text and text[:4].isdigit()
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_turn_log_appends_json_lines_readable_by_the_owner_only(tmp_path):
    tl = TurnLog(tmp_path / "state" / "sarai" / "turns.jsonl")
    assert tl.read() == []
    for i in range(5):
        tl.append({"transcript": f"q{i}", "reply": "á"})
    lines = tl.path.read_text("utf-8").splitlines()
    assert [json.loads(x)["transcript"] for x in lines] == [f"q{i}" for i in range(5)]
    assert "á" in lines[0]  # readable, not \\u-escaped
    assert [r["transcript"] for r in tl.read(2)] == ["q3", "q4"]
    assert stat.S_IMODE(tl.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tl.path.parent.stat().st_mode) == 0o700
    tl.clear()
    assert not tl.path.exists()


def test_event_hub_fans_out_and_survives_a_broken_listener():
    hub, got = EventHub(), []
    hub.subscribe(lambda ev: 1 / 0)
    unsubscribe = hub.subscribe(got.append)
    ev = Event(EventKind.MODE, {"mode": "wake"})
    hub.publish(ev)
    unsubscribe()
    hub.publish(ev)
    assert got == [ev]
    assert ev.as_dict()["event"] == "mode" and ev.as_dict()["mode"] == "wake"
