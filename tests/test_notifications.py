"""Desktop notifications: which events become notices, and the notices themselves as a
notification service on a private D-Bus session receives them (a small listener that owns
org.freedesktop.Notifications, tests/notification_listener.py), from a real daemon too."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from daemon_harness import start_daemon, stop_daemon

from conftest import REPO
from sarai.daemon.app import Context
from sarai.daemon.config import load_config
from sarai.daemon.control.hub import EventHub
from sarai.daemon.desktop import notifications
from sarai.daemon.desktop.notifications import NoticeRules, Notifications, SettingsFile
from sarai.daemon.desktop.notify_bus import DesktopNotifier
from sarai.daemon.desktop.settings import NoteKind
from sarai.daemon.events import Event, EventKind
from sarai.daemon.paths import Paths

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None,
                                reason="needs dbus-daemon (make setup installs it)")
LISTENER = REPO / "tests" / "notification_listener.py"


def test_rules_report_changes_once():
    rules = NoticeRules()
    mic = "no microphone available (default input device: …); retrying every 3 s"
    got = [n for ev in (
        {"event": "state", "state": "listening"},
        {"event": "state", "state": "error", "message": mic},
        {"event": "state", "state": "error", "message": mic},  # the retry says it again
        {"event": "state", "state": "listening", "message": "microphone is back"},
        {"event": "state", "state": "error", "message": "a turn failed; see the log"},
        {"event": "state", "state": "error", "message": "a turn failed; see the log"},
        {"event": "turn", "transcript": "Why is the sky blue?", "tier": "omni_fast",
         "reply": "Light scatters.", "reason": "need 0.8 → omni_quality (fell back to "
         "omni_fast: omni_quality unavailable: the load would exceed the RAM budget)"},
        {"event": "turn", "transcript": "hi", "tier": "", "reply": "",
         "error": "omni_fast unavailable: gone.gguf not found"},
        {"event": "mode", "mode": "push"},
    ) for n in rules.notices(ev)]
    kinds = [(n.kind, n.summary) for n in got]
    assert kinds == [
        (NoteKind.MICROPHONE, "SARAi: microphone lost"),
        (NoteKind.MICROPHONE, "SARAi: microphone back"),
        (NoteKind.ERRORS, "SARAi: error"),
        (NoteKind.MODEL, "SARAi: a model could not be used"),
        (NoteKind.TRANSCRIPTS, "“Why is the sky blue?”"),
        (NoteKind.MODEL, "SARAi: no model could answer"),
        (NoteKind.TRANSCRIPTS, "“hi”"),
    ]
    assert got[3].body == ("omni_quality unavailable: the load would exceed the RAM budget — "
                           "omni_fast answered instead.")
    assert got[4].body == "omni_fast: Light scatters."
    assert got[0].slot == got[1].slot == "microphone"


@pytest.fixture
def bus(tmp_path):
    """A private D-Bus session bus: its address."""
    p = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    address = p.stdout.readline().strip()
    try:
        yield address
    finally:
        p.terminate()
        p.wait(10)


class Listener:
    def __init__(self, address: str, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen([sys.executable, str(LISTENER), str(out)],
                                     env={"DBUS_SESSION_BUS_ADDRESS": address, "PATH": "/usr/bin"},
                                     cwd=REPO)
        self.wait_for(lambda: any(m.get("ready") for m in self.all()), "the listener")

    def all(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def messages(self) -> list[dict]:
        return [m for m in self.all() if "summary" in m]

    def wait_for(self, what, why: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := what():
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {why}: {self.all()}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def listener(bus, tmp_path):
    lst = Listener(bus, tmp_path / "notes.jsonl")
    try:
        yield lst
    finally:
        lst.close()


def context(tmp_path: Path, text: str) -> Context:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    return Context(load_config(cfg), replace(Paths.from_env(), config_file=cfg))


def test_kinds_are_off_by_default_and_follow_the_config_file(bus, listener, tmp_path):
    ctx = context(tmp_path, "notify:\n  microphone: true\n")
    hub = EventHub()
    notes = Notifications(SettingsFile(ctx.paths.config_file, ctx.config.notify),
                          DesktopNotifier(address=bus))
    unsubscribe = hub.subscribe(notes.listener)
    turn = {"transcript": "What time is it?", "tier": "omni_fast", "reply": "Noon.",
            "reason": "short"}
    hub.publish(Event(EventKind.TURN, turn))  # transcripts: off
    hub.publish(Event(EventKind.STATE, {"state": "error",
                                        "message": "cannot open the microphone: gone"}))
    hub.publish(Event(EventKind.STATE, {"state": "listening", "message": "microphone is back"}))
    got = listener.wait_for(lambda: len(listener.messages()) >= 2 and listener.messages(),
                            "two notices")
    assert [(m["summary"], m["body"]) for m in got] == [
        ("SARAi: microphone lost", "cannot open the microphone: gone"),
        ("SARAi: microphone back", "Listening again.")]
    assert got[0]["app"] == "SARAi" and got[0]["urgency"] == 2 and got[0]["timeout"] == 8000
    assert got[1]["replaces"] == got[0]["id"]  # "back" replaces "lost" on screen
    # The tray switches transcripts on in the file; the next turn is shown.
    time.sleep(0.01)
    ctx.paths.config_file.write_text("notify:\n  microphone: true\n  transcripts: true\n")
    hub.publish(Event(EventKind.TURN, turn))
    last = listener.wait_for(lambda: len(listener.messages()) >= 3 and listener.messages()[-1],
                             "the transcript")
    assert (last["summary"], last["body"]) == ("“What time is it?”", "omni_fast: Noon.")
    unsubscribe()
    notes.close()
    assert len(listener.messages()) == 3


def test_no_notification_service_is_one_log_line(bus, tmp_path, caplog):
    ctx = context(tmp_path, "notify:\n  errors: true\n")
    notes = Notifications(SettingsFile(ctx.paths.config_file, ctx.config.notify),
                          DesktopNotifier(address=bus))  # a bus, but nobody shows notices
    with caplog.at_level(logging.DEBUG, logger="sarai.daemon.desktop.notify_bus"):
        for i in range(3):
            notes.listener(Event(EventKind.STATE, {"state": "error", "message": f"boom {i}"}))
        notes.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == ("desktop notifications are not shown: no notification "
                                        "service runs in this session")
    assert not notes.sent


@pytest.mark.audio_devices
def test_the_real_daemon_notifies_a_transcript(bus, listener, sarai_env, pulse):
    env = {**sarai_env, **pulse.env, "DBUS_SESSION_BUS_ADDRESS": bus}
    d = start_daemon(env, config="notify:\n  transcripts: true\n")
    try:
        d.call("ask", text="What is the capital of France?", speak=False)
        got = listener.wait_for(lambda: listener.messages(), "the daemon's notice", 60)
        assert got[0]["summary"] == "“What is the capital of France?”"
        assert got[0]["body"].startswith(("omni_fast: ", "omni_quality: ", "tiny: "))
        assert got[0]["app"] == "SARAi"
    finally:
        stop_daemon(d)


def test_attach_returns_a_detach_that_stops_notices(bus, listener, tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus)
    ctx = context(tmp_path, "notify:\n  errors: true\n")
    hub = EventHub()
    made = []
    real = notifications.Notifications

    def spy(settings, sender=None):
        n = real(settings, DesktopNotifier(address=bus))
        made.append(n)
        return n

    monkeypatch.setattr(notifications, "Notifications", spy)
    detach = notifications.attach(hub, ctx)
    hub.publish(Event(EventKind.STATE, {"state": "error", "message": "first"}))
    listener.wait_for(lambda: listener.messages(), "the first notice")
    detach()
    hub.publish(Event(EventKind.STATE, {"state": "error", "message": "second"}))
    time.sleep(0.5)
    assert [m["body"] for m in listener.messages()] == ["first"]
    assert made and not made[0]._thread.is_alive()
