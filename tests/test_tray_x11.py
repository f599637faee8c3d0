"""The tray for real: Xvfb as the screen, trayer as the system tray, a D-Bus session, the real
daemon behind it. Screenshots of the icon in several states are checked pixel by pixel and
kept in the test's temporary folder (and in $SARAI_TRAY_SHOTS if set) for a person to look at.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import start_daemon, stop_daemon
from PIL import Image

from conftest import REPO
from sarai.daemon.control.wire import ControlError
from sarai.daemon.events import State
from sarai.daemon.tray.icon import COLORS, MARK_LIT

TOOLS = ("Xvfb", "trayer", "import", "xdotool", "dbus-run-session")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason=f"needs {', '.join(TOOLS)} (make setup installs them)",
)
STRIP = 40  # trayer is a 32 px panel along the top edge


class Screen:
    def __init__(self, shots: Path) -> None:
        self.shots = shots
        self.procs: list[subprocess.Popen] = []
        r, w = os.pipe()
        self.procs.append(subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        os.close(w)
        with os.fdopen(r) as f:
            self.display = ":" + f.readline().strip()
        self.procs.append(subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
             "--height", "32", "--SetDockType", "true", "--transparent", "false",
             "--tint", "0xdddddd", "--expand", "true"],
            env={**os.environ, "DISPLAY": self.display},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def shot(self, name: str) -> Image.Image:
        path = self.shots / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=30,
                       env={**os.environ, "DISPLAY": self.display})
        keep = os.environ.get("SARAI_TRAY_SHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return Image.open(path).convert("RGB")

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], check=True, timeout=30,
                       env={**os.environ, "DISPLAY": self.display})

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            p.wait(10)


def count(img: Image.Image, color: tuple[int, int, int], box=None, tol: int = 12) -> int:
    """Pixels of `color` (within `tol` per channel) in `box` (default: the tray strip)."""
    region = np.asarray(img.crop(box or (0, 0, img.width, STRIP)), dtype=np.int16)
    return int((np.abs(region - np.array(color, dtype=np.int16)).max(axis=2) <= tol).sum())


@pytest.fixture
def setup(sarai_env, pulse, tmp_path):
    screen = Screen(tmp_path)
    daemon = start_daemon({**sarai_env, **pulse.env})
    tray_log = tmp_path / "tray.log"
    env = {**sarai_env, "DISPLAY": screen.display, "XDG_RUNTIME_DIR": str(daemon.runtime)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    with tray_log.open("w") as log:
        tray = subprocess.Popen(
            ["dbus-run-session", "--", sys.executable, "-m", "sarai.daemon.cli", "tray"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield screen, daemon, tray, tray_log
    finally:
        tray.terminate()
        tray.wait(10)
        stop_daemon(daemon)
        screen.close()


def wait_for(what, timeout: float, why: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {why}")


def test_the_icon_shows_state_and_residency_and_the_menu_works(setup):
    screen, daemon, tray, tray_log = setup
    wait_for(lambda: "tray icon shown" in tray_log.read_text(), 60, "the tray icon")
    assert "tray backend: gtk (icon, tooltip and menu)" in tray_log.read_text()

    listening = COLORS[State.LISTENING]
    img = wait_for(lambda: (s := screen.shot("1-listening")) and count(s, listening) > 50 and s,
                   30, "a green (listening) icon in the tray")
    lit_before = count(img, MARK_LIT, tol=20)
    assert lit_before > 0  # omni_fast (and tiny, on the same file) are resident

    daemon.call("mute")
    img = wait_for(lambda: (s := screen.shot("2-muted")) and count(s, COLORS[State.MUTED]) > 50
                   and s, 30, "the grey muted icon")
    assert count(img, listening) == 0

    daemon.call("unmute")
    daemon.call("models", action="load", tier="omni_quality")
    img = wait_for(lambda: (s := screen.shot("3-more-resident"))
                   and count(s, MARK_LIT, tol=20) > lit_before and count(s, listening) > 50
                   and s, 30, "more tier marks lit")

    # While a question is answered the icon turns amber (thinking), then blue (speaking). A
    # short question can be thought about for less than a screenshot and its count take to
    # catch it; a long one takes the model seconds to read.
    question = "Tell me about the sea: " + "its waves, its tides, its fish and its boats, " * 50
    threading.Thread(target=lambda: daemon.call("ask", text=question.strip(", ") + "."),
                     daemon=True).start()
    wait_for(lambda: (s := screen.shot("4-thinking")) and count(s, COLORS[State.THINKING]) > 50,
             60, "the amber thinking icon")
    wait_for(lambda: (s := screen.shot("5-speaking")) and count(s, COLORS[State.SPEAKING]) > 50,
             90, "the blue speaking icon")
    wait_for(lambda: daemon.call("status")["state"] == "listening", 120, "the answer to end")

    # Open the menu on the icon and pick "Muted" with the keyboard.
    green = [(x, y) for y in range(STRIP) for x in range(img.width)
             if img.getpixel((x, y)) == listening]
    x = sum(p[0] for p in green) // len(green)
    y = sum(p[1] for p in green) // len(green)
    screen.xdotool("mousemove", str(x), str(y), "click", "3")
    menu = wait_for(lambda: (s := screen.shot("6-menu")) and
                    count(s, (255, 255, 255), box=(0, STRIP, s.width, s.height), tol=30) > 5000
                    and s, 20, "the menu to open")
    assert menu is not None
    screen.xdotool("key", "Down", "Down", "Down", "Down", "Return")
    wait_for(lambda: daemon.call("status")["mode"] == "muted", 20, "the menu to mute SARAi")

    # The daemon goes away: the icon says so, and the tray keeps running.
    daemon.call("quit")
    daemon.proc.wait(30)
    # (The icon is scaled to the panel, so a few blended edge pixels come close to other greys.)
    wait_for(lambda: (s := screen.shot("7-not-running")) and count(s, COLORS[None]) > 60
             and count(s, COLORS[State.MUTED]) < 60, 30, "the hollow not-running icon")
    assert tray.poll() is None
    with pytest.raises(ControlError):
        daemon.call("status")


def test_without_a_session_bus_the_tray_degrades_to_an_icon(sarai_env, tmp_path):
    screen = Screen(tmp_path)
    log = tmp_path / "tray.log"
    env = {**sarai_env, "DISPLAY": screen.display, "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    try:
        with log.open("w") as out:
            tray = subprocess.Popen([sys.executable, "-m", "sarai.daemon.cli", "tray"], cwd=REPO,
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "tray icon shown" in log.read_text(), 60, "the tray icon")
            text = log.read_text()
            assert "tray backend: xorg — icon only, no menu" in text
            img = wait_for(lambda: (s := screen.shot("xorg-not-running"))
                           and count(s, COLORS[None]) > 30 and s, 30, "the icon")
            assert img is not None
        finally:
            tray.terminate()
            tray.wait(10)
    finally:
        screen.close()


def test_no_display_is_one_clear_sentence(sarai_env):
    env = {k: v for k, v in sarai_env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    p = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "tray"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip() == ("sarai: error: no graphical session to show a tray icon in "
                                "(DISPLAY is not set)")


def test_start_sarai_from_the_tray_then_a_fresh_picture(sarai_env, pulse, tmp_path):
    """Not running: a left click starts SARAi (a background `sarai run`, no service being
    installed); the marks then show what the new daemon has resident, and a tier's submenu
    shows its state in words."""
    from daemon_harness import short_runtime_dir

    screen = Screen(tmp_path)
    runtime = short_runtime_dir()
    env = {**sarai_env, **pulse.env, "DISPLAY": screen.display, "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    log = tmp_path / "tray.log"
    sock = runtime / "sarai" / "control.sock"

    def call(cmd: str, **args):
        from sarai.daemon.control.client import ControlClient

        with ControlClient(sock, timeout=60) as c:
            return c.call(cmd, **args)

    with log.open("w") as out:
        tray = subprocess.Popen(["dbus-run-session", "--", sys.executable, "-m",
                                 "sarai.daemon.cli", "tray"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "tray icon shown" in log.read_text(), 60, "the tray icon")
        img = wait_for(lambda: (s := screen.shot("start-0-not-running"))
                       and count(s, COLORS[None]) > 30 and s, 30, "the hollow icon")
        ring = [(x, y) for y in range(STRIP) for x in range(img.width)
                if img.getpixel((x, y)) == COLORS[None]]
        x = sum(p[0] for p in ring) // len(ring)
        y = sum(p[1] for p in ring) // len(ring)
        screen.xdotool("mousemove", str(x), str(y), "click", "1")
        wait_for(lambda: "starting SARAi" in log.read_text(), 20, "the start")

        def listening():
            try:
                return call("status")["state"] == "listening"
            except ControlError:
                return False

        wait_for(listening, 300, "the started daemon to listen")
        img = wait_for(lambda: (s := screen.shot("start-1-running"))
                       and count(s, COLORS[State.LISTENING]) > 50
                       and count(s, MARK_LIT, tol=20) > 0 and s, 30,
                       "a green icon with the resident tiers lit")
        # The menu, with omni_fast's submenu open: "Loaded" in words, no inverted tick.
        screen.xdotool("mousemove", str(x), str(y), "click", "3")
        wait_for(lambda: (s := screen.shot("start-2-menu")) and
                 count(s, (255, 255, 255), box=(0, STRIP, s.width, s.height), tol=30) > 5000,
                 20, "the menu")
        screen.xdotool("key", *(["Down"] * 5), "Right")
        time.sleep(1.0)
        screen.shot("start-3-tier-submenu")
        screen.xdotool("key", "Escape", "Escape", "Escape")
    finally:
        with contextlib.suppress(ControlError, OSError):
            call("quit")
        tray.terminate()
        tray.wait(10)
        screen.close()
        shutil.rmtree(runtime, ignore_errors=True)
    assert "Traceback" not in log.read_text()
