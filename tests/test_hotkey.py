"""The global push-to-talk key: parsing, hold versus tap, a real X11 grab under Xvfb driven by
xdotool, and a push-to-talk turn of the real daemon driven by the key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from daemon_harness import start_daemon, stop_daemon

from conftest import REPO
from sarai.daemon.desktop.hotkey import TAP_S, HotkeyUnavailable, PushKey, X11Grab
from sarai.daemon.desktop.keys import HotkeyError, parse_hotkey

X11_TOOLS = ("Xvfb", "xdotool")
needs_x = pytest.mark.skipif(any(shutil.which(t) is None for t in X11_TOOLS),
                             reason="needs Xvfb and xdotool (make setup installs them)")


@pytest.mark.parametrize(("text", "mods", "key", "label", "trigger"), [
    ("<ctrl>+<alt>+space", {"ctrl", "alt"}, "space", "Ctrl+Alt+Space", "CTRL+ALT+space"),
    ("Ctrl+Shift+F9", {"ctrl", "shift"}, "F9", "Ctrl+Shift+F9", "CTRL+SHIFT+F9"),
    ("<super>+a", {"super"}, "a", "Super+A", "LOGO+a"),
    ("Pause", set(), "Pause", "Pause", "Pause"),
    ("<ctrl>+esc", {"ctrl"}, "Escape", "Ctrl+Escape", "CTRL+Escape"),
])
def test_key_strings(text, mods, key, label, trigger):
    k = parse_hotkey(text)
    assert k.modifiers == frozenset(mods) and k.key == key and k.keysym
    assert k.label == label and k.portal_trigger == trigger


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"), ("<ctrl>+<alt>", "no key"), ("<ctrl>+a+b", "two keys"),
    ("<ctrl>+spcae", "unknown key 'spcae'"), ("ctrl++alt+x", "cannot read"),
    ("<ctrl>+<ctrl>+x", "twice"),
])
def test_bad_key_strings_say_why(text, why):
    with pytest.raises(HotkeyError, match=why):
        parse_hotkey(text)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_held_key_talks_while_down_and_a_tap_toggles():
    sent: list[bool] = []
    clock = Clock()
    key = PushKey(sent.append, clock)
    key.pressed()
    clock.t += 2.0
    key.released()  # held: release ends the turn
    assert sent == [True, False] and not key.talking
    key.pressed()
    clock.t += TAP_S / 3
    key.released()  # a tap: keeps listening…
    assert sent == [True, False, True] and key.talking
    clock.t += 5
    key.pressed()  # …until the next press
    key.released()
    assert sent == [True, False, True, False] and not key.talking
    key.pressed()  # no release ever arrives (a portal without them): press again to stop
    key.pressed()
    assert sent[-2:] == [True, False]


@pytest.fixture
def screen(tmp_path):
    from test_tray_x11 import Screen

    s = Screen(tmp_path)
    try:
        yield s
    finally:
        s.close()


def wait_for(what, timeout: float, why: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := what():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {why}")


@needs_x
def test_x11_grab_sees_presses_and_releases_and_ignores_auto_repeat(screen):
    events: list[str] = []
    grab = X11Grab(parse_hotkey("<ctrl>+<alt>+space"), lambda: events.append("down"),
                   lambda: events.append("up"), display=screen.display)
    try:
        screen.xdotool("keydown", "ctrl+alt+space")
        wait_for(lambda: events == ["down"], 10, "the press")
        time.sleep(1.0)  # Xvfb repeats a held key: none of it may show as release + press
        assert events == ["down"]
        screen.xdotool("keyup", "ctrl+alt+space")
        wait_for(lambda: events == ["down", "up"], 10, "the release")
        screen.xdotool("key", "space")  # without the modifiers: not ours
        screen.xdotool("key", "ctrl+alt+space")
        wait_for(lambda: events == ["down", "up", "down", "up"], 10, "a tap")
        # A second program asking for the same key is told it is taken.
        with pytest.raises(HotkeyUnavailable, match="already taken by another program"):
            X11Grab(parse_hotkey("<ctrl>+<alt>+space"), lambda: None, lambda: None,
                    display=screen.display)
    finally:
        grab.stop()


@needs_x
def test_sarai_hotkey_with_a_bad_key_is_one_clear_sentence(sarai_env, screen):
    env = {**sarai_env, "DISPLAY": screen.display}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "hotkey", "--key",
                        "<ctrl>+spcae"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == ("sarai: error: listen.hotkey '<ctrl>+spcae': unknown key "
                                "'spcae' (X key names such as space, F9, a, Pause)")


@needs_x
@pytest.mark.audio_devices
def test_the_key_drives_a_push_to_talk_turn_of_the_real_daemon(sarai_env, pulse, screen,
                                                               make_speech, tmp_path):
    wav = make_speech(["What is your name?"])
    config = "listen:\n  mode: push\n  hotkey: \"<ctrl>+<alt>+space\"\n"
    d = start_daemon({**sarai_env, **pulse.env}, config=config)
    log = tmp_path / "hotkey.log"
    env = {**sarai_env, "DISPLAY": screen.display, "XDG_RUNTIME_DIR": str(d.runtime)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # no portal: the X11 grab
    with log.open("w") as out:
        key = subprocess.Popen([sys.executable, "-m", "sarai.daemon.cli", "-v", "hotkey"],
                               cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ready (x11)" in log.read_text(), 60, "the key grab")
        d.wait_for(lambda: d.call("status")["state"] == "listening", 60, "listening")
        screen.xdotool("keydown", "ctrl+alt+space")
        wait_for(lambda: "push start" in log.read_text(), 20, "push start")
        pulse.play(wav).wait(30)
        time.sleep(0.3)
        screen.xdotool("keyup", "ctrl+alt+space")
        wait_for(lambda: "push stop" in log.read_text(), 20, "push stop")
        line = d.wait_for(lambda: next((ln for ln in list(d.stdout) if ln.startswith("{")),
                                       None), 180, "the answered turn")
        turn = json.loads(line)
        assert "name" in turn["transcript"].lower(), turn
        assert turn["reply"].strip() and turn["tier"]
    finally:
        key.terminate()
        key.wait(10)
        stop_daemon(d)
    assert "Traceback" not in log.read_text()


def test_no_display_and_no_portal_is_one_clear_sentence(sarai_env):
    env = {k: v for k, v in sarai_env.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")}
    env["XDG_RUNTIME_DIR"] = "/nonexistent"
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "hotkey", "--key", "F9"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no X display" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture
def fake_portal(tmp_path):
    """A private session bus with a fake GlobalShortcuts portal on it: (address, log)."""
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, text=True)
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    log = tmp_path / "portal.jsonl"
    portal = subprocess.Popen([sys.executable, str(REPO / "tests" / "fake_shortcuts_portal.py"),
                               str(log)], env={"DBUS_SESSION_BUS_ADDRESS": address}, cwd=REPO)
    try:
        wait_for(lambda: log.exists() and "ready" in log.read_text(), 20, "the fake portal")
        yield address, log
    finally:
        portal.terminate()
        portal.wait(10)
        bus.terminate()
        bus.wait(10)


@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")
def test_sarai_hotkey_through_a_fake_shortcuts_portal(fake_portal, sarai_env, tmp_path):
    address, portal_log = fake_portal
    env = {k: v for k, v in sarai_env.items() if k != "DISPLAY"}  # a Wayland-like session
    env.update(DBUS_SESSION_BUS_ADDRESS=address, XDG_RUNTIME_DIR=str(tmp_path))
    log = tmp_path / "hotkey.log"
    with log.open("w") as out:
        key = subprocess.Popen([sys.executable, "-m", "sarai.daemon.cli", "-v", "hotkey",
                                "--key", "<ctrl>+<alt>+space"], cwd=REPO, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "bound through the portal (CTRL+ALT+space)" in log.read_text(), 30,
                 "the binding")
        calls = [json.loads(line).get("call") for line in portal_log.read_text().splitlines()]
        assert calls[-2:] == ["CreateSession", "BindShortcuts"]
        assert "'preferred_trigger': 'CTRL+ALT+space'" in portal_log.read_text()
        subprocess.run(["gdbus", "call", "--address", address, "--dest",
                        "org.freedesktop.portal.Desktop", "--object-path",
                        "/org/freedesktop/portal/desktop", "--method",
                        "org.sarai.FakePortal.Press"], check=True, capture_output=True)
        # The press reached `push start`; no daemon runs here, which it says once.
        wait_for(lambda: "push start failed: SARAi is not running" in log.read_text(), 20,
                 "the press to be sent")
    finally:
        key.terminate()
        key.wait(10)
    assert "Traceback" not in log.read_text()


def test_config_validate_names_a_bad_hotkey_line(sarai, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen:\n  mode: push\n  hotkey: \"<ctrl>+spcae\"\n")
    r = sarai("config", "validate", str(cfg))
    assert r.code == 2
    assert r.err.strip() == (f"sarai: error: {cfg}:3: listen.hotkey: unknown key 'spcae' "
                             "(X key names such as space, F9, a, Pause)")
    cfg.write_text("listen:\n  mode: push\n  hotkey: \"<ctrl>+<alt>+space\"\n")
    assert sarai("config", "validate", str(cfg)).code == 0
