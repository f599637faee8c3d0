"""The tray without a display: icon rendering (PIL), the view built from events, the menu."""

from __future__ import annotations

import os
import sys

import pytest

from sarai.daemon.events import ListenMode, State
from sarai.daemon.tray.app import candidates, to_pystray
from sarai.daemon.tray.icon import COLORS, DISC_CENTER, MARK_DARK, MARK_LIT, PIN, TierMark, mark_box
from sarai.daemon.tray.icon import render_icon as render
from sarai.daemon.tray.menu import Commands, TrayModel, TrayView, build_menu

MARKS = (TierMark("omni_fast", True, True), TierMark("omni_quality", True),
         TierMark("expert", False), TierMark("tiny", False))


def rgb(img, xy):
    return img.getpixel(xy)[:3]


def disc_color(img):
    """The colour that fills most of the disc (the glyph is white, the ring is dark)."""
    cx, cy = DISC_CENTER
    pixels = [rgb(img, (cx + dx, cy + dy)) for dx in (-17, 17) for dy in (-6, 6)]
    return max(set(pixels), key=pixels.count)


@pytest.mark.parametrize("state", list(State))
def test_each_state_fills_the_disc_with_its_colour(state):
    img = render(state, MARKS)
    assert img.size == (64, 64) and img.mode == "RGBA"
    assert disc_color(img) == COLORS[state]


def test_every_state_looks_different():
    images = {s: render(s, MARKS).tobytes() for s in [*State, None]}
    assert len(set(images.values())) == len(images)


def test_muted_and_listening_differ_in_shape_not_only_colour():
    listening = render(State.LISTENING).convert("L")
    muted = render(State.MUTED).convert("L")
    cx, cy = DISC_CENTER
    # The slash across the microphone: bright where the listening glyph has the disc.
    assert listening.getpixel((cx + 10, cy + 10)) < 200 < muted.getpixel((cx + 10, cy + 10))


def test_tier_marks_are_lit_when_resident_and_pinned_shows_a_pin():
    img = render(State.LISTENING, MARKS)
    for i, mark in enumerate(MARKS):
        x0, y0, x1, y1 = mark_box(i, len(MARKS))
        inner = rgb(img, (x0 + 2, y0 + 2))
        assert inner == (MARK_LIT if mark.resident else MARK_DARK), mark
        centre = rgb(img, ((x0 + x1) // 2, (y0 + y1) // 2))
        assert (centre == PIN) == mark.pinned, mark


def test_not_running_is_a_hollow_ring():
    img = render(None, tuple(TierMark(m.tier, False) for m in MARKS))
    cx, cy = DISC_CENTER
    assert img.getpixel((cx + 15, cy))[3] == 0  # transparent inside the ring
    assert rgb(img, (cx + 21, cy)) == COLORS[None]


def test_the_view_follows_the_event_stream():
    model = TrayModel()
    assert model.view.tooltip() == "SARAi is not running"
    model.apply({"event": "state", "state": "listening", "message": None})
    model.apply({"event": "mode", "mode": "wake"})
    view = model.apply({"event": "residency", "models": [
        {"tier": "omni_fast", "model": "SmolLM2", "resident": True, "pinned": True},
        {"tier": "omni_quality", "model": "Gemma 3", "resident": False, "pinned": False},
    ], "ram": {"used_mb": 1536, "models_mb": 94, "budget_mb": 12288}})
    assert view.connected and view.state is State.LISTENING and view.mode is ListenMode.WAKE
    assert [m.resident for m in view.marks] == [True, False]
    tip = view.tooltip().splitlines()
    assert tip == ["SARAi — listening", "mode: wake", "omni_fast: SmolLM2 (pinned)",
                   "RAM 1.50 GB / 12.0 GB budget"]
    model.apply({"event": "turn", "transcript": "hi"})  # other events change nothing
    assert model.view == view
    assert not model.disconnected().connected


class Recorder:
    def __init__(self):
        self.sent = []
        self.opened = 0
        self.closed = 0

    def commands(self):
        def send(cmd, **args):
            self.sent.append((cmd, args))

        def open_log():
            self.opened += 1

        def quit_tray():
            self.closed += 1

        return Commands(send, open_log, quit_tray)


def view(**kw):
    base = dict(connected=True, state=State.LISTENING, mode=ListenMode.ALWAYS,
                log_file="/tmp/daemon.log", used_mb=900.0, budget_mb=None)
    base.update(kw)
    return TrayView(**base)


def by_text(entries, start):
    return next(e for e in entries if e is not None and e.text.startswith(start))


def test_menu_has_modes_push_tiers_log_and_quit():
    rec = Recorder()
    menu = build_menu(view(), rec.commands())
    texts = [e.text if e else "---" for e in menu]
    assert texts[0] == "SARAi — listening" and not menu[0].enabled
    assert texts[2:6] == ["Always listening", "After the wake word", "Push to talk", "Muted"]
    modes = menu[2:6]
    assert [e.checked for e in modes] == [True, False, False, False]
    assert all(e.radio for e in modes)
    push = by_text(menu, "Talking")
    assert push.checked is False and not push.enabled  # only in push mode
    assert by_text(menu, "RAM 0.88 GB used").enabled is False
    assert by_text(menu, "Devices").submenu  # microphone and speaker choices
    modes[3].action()
    by_text(menu, "Open the log").action()
    by_text(menu, "Quit SARAi").action()
    by_text(menu, "Close the tray icon").action()
    assert rec.sent == [("mode", {"mode": "muted"}), ("quit", {})]
    assert rec.opened == 1 and rec.closed == 1


def test_tier_entries_show_residency_and_offer_load_unload_pin():
    from sarai.daemon.tray.menu import TierInfo

    rec = Recorder()
    tiers = (TierInfo("omni_fast", "SmolLM2", True, True, True),
             TierInfo("omni_quality", "Gemma 3", False, False, True))
    menu = build_menu(view(tiers=tiers), rec.commands())
    fast, quality = by_text(menu, "● omni_fast"), by_text(menu, "○ omni_quality")
    assert fast.text == "● omni_fast: SmolLM2 (starter)"
    # No check box on an entry with a submenu: GTK toggles it when the submenu opens, which
    # showed a loaded tier unticked (and an unloaded one ticked) while it was open.
    assert fast.checked is None and quality.checked is None
    state, load, unload, pin = fast.submenu
    assert state.text == "Loaded" and not state.enabled
    assert (load.enabled, unload.enabled, pin.checked) == (False, False, True)  # pinned
    state, load, unload, pin = quality.submenu
    assert state.text == "Not loaded"
    assert (load.enabled, unload.enabled, pin.checked) == (True, False, False)
    load.action()
    pin.action()
    fast.submenu[3].action()
    assert rec.sent == [("models", {"action": "load", "tier": "omni_quality"}),
                        ("models", {"action": "pin", "tier": "omni_quality"}),
                        ("models", {"action": "unpin", "tier": "omni_fast"})]


def test_push_to_talk_toggles_in_push_mode():
    rec = Recorder()
    by_text(build_menu(view(mode=ListenMode.PUSH), rec.commands()), "Talking").action()
    pushing = by_text(build_menu(view(mode=ListenMode.PUSH, pushing=True), rec.commands()),
                      "Talking")
    assert pushing.checked and pushing.enabled
    pushing.action()
    assert rec.sent == [("push", {"action": "start"}), ("push", {"action": "stop"})]


def test_menu_when_the_daemon_is_not_running():
    rec = Recorder()
    started = []
    cmds = rec.commands()
    cmds.start_daemon = lambda: started.append(True)
    menu = build_menu(TrayView(), cmds)
    assert menu[0].text == "SARAi is not running" and not menu[0].enabled
    start = by_text(menu, "Start SARAi")
    assert start.default  # a left click on the icon starts it
    start.action()
    assert started == [True]
    assert not by_text(menu, "Open the log").enabled  # no log known yet
    menu[-1].action()
    assert rec.closed == 1 and rec.sent == []


def test_reconnecting_takes_the_new_daemons_picture_at_once():
    model = TrayModel()
    model.apply({"event": "state", "state": "listening", "message": None})
    model.apply({"event": "residency", "models": [
        {"tier": "omni_fast", "model": "SmolLM2", "resident": True, "pinned": True},
        {"tier": "omni_quality", "model": "Gemma 3", "resident": True, "pinned": False}]})
    gone = model.disconnected()
    assert not gone.connected and not any(m.resident for m in gone.marks)
    # A new daemon (after `sarai quit; sarai run`) answers status before any event.
    view = model.connected({"state": "loading", "message": "starting", "mode": "push",
                            "log_file": "/tmp/d.log", "ram": {"used_mb": 10, "budget_mb": 100},
                            "models": [{"tier": "omni_fast", "model": "SmolLM2",
                                        "resident": True, "pinned": True},
                                       {"tier": "omni_quality", "model": "Gemma 3",
                                        "resident": False, "pinned": False}]})
    assert view.connected and view.state is State.LOADING and view.mode is ListenMode.PUSH
    assert [m.resident for m in view.marks] == [True, False]
    assert view.log_file == "/tmp/d.log"


def test_devices_notifications_and_hotkey_entries():
    from sarai.daemon.tray.menu import DeviceChoice

    chosen, switched = [], []
    rec = Recorder()
    cmds = rec.commands()
    cmds.choose_device = lambda kind, name: chosen.append((kind, name))
    cmds.set_notify = lambda kind, on: switched.append((kind, on))
    v = view(inputs=(DeviceChoice("alsa_input.usb", "USB Headset", False),
                     DeviceChoice("alsa_input.pci", "Built-in Audio", True)),
             outputs=(DeviceChoice("alsa_output.usb", "USB Headset", False),),
             input_device="USB Headset", output_device="gone-speaker",
             notify=(("model", False), ("microphone", True), ("errors", False),
                     ("transcripts", False)),
             hotkey="Ctrl+Alt+Space", mode=ListenMode.PUSH)
    menu = build_menu(v, cmds)
    assert by_text(menu, "Push-to-talk key: Ctrl+Alt+Space").enabled is False
    mic, spk = by_text(menu, "Devices").submenu
    texts = [e.text for e in mic.submenu]
    assert texts == ["System default", "USB Headset", "Built-in Audio (default)"]
    assert [e.checked for e in mic.submenu] == [False, True, False]
    mic.submenu[2].action()
    mic.submenu[0].action()
    # A configured speaker that is not plugged in is shown as such, still ticked.
    assert spk.submenu[-1].text == "gone-speaker (not present)" and spk.submenu[-1].checked
    notes = by_text(menu, "Notifications").submenu
    assert [e.checked for e in notes] == [False, True, False, False]
    notes[1].action()
    notes[3].action()
    assert chosen == [("input", "alsa_input.pci"), ("input", None)]
    assert switched == [("microphone", False), ("transcripts", True)]
    broken = build_menu(view(hotkey_problem="Ctrl+Alt+Space is already taken"), cmds)
    assert by_text(broken, "Push-to-talk key unavailable").text.endswith("already taken")


def test_backend_choice_prefers_appindicator_only_with_a_host():
    assert candidates("auto", sni=lambda: True, bus=lambda: True) == [
        "appindicator", "gtk", "xorg"]
    assert candidates("auto", sni=lambda: False, bus=lambda: True) == ["gtk", "xorg"]
    assert candidates("auto", sni=lambda: True, bus=lambda: False) == ["xorg"]
    assert candidates("xorg") == ["xorg"]


def test_entries_become_a_pystray_menu(monkeypatch):
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    for mod in [m for m in sys.modules if m == "pystray" or m.startswith("pystray.")]:
        monkeypatch.delitem(sys.modules, mod)
    import pystray

    from sarai.daemon.tray.menu import TierInfo

    rec = Recorder()
    tiers = (TierInfo("omni_fast", "SmolLM2", True, True),)
    menu = to_pystray(pystray, build_menu(view(tiers=tiers, mode=ListenMode.WAKE),
                                          rec.commands()))
    items = list(menu.items)
    wake = next(i for i in items if i.text == "After the wake word")
    assert wake.checked is True and wake.radio
    wake(None)
    assert rec.sent == [("mode", {"mode": "wake"})]
    fast = next(i for i in items if i.text.startswith("● omni_fast"))
    assert fast.checked is None and [i.text for i in fast.submenu.items] == [
        "Loaded", "Load", "Unload", "Pin (keep resident)"]
    assert os.environ["PYSTRAY_BACKEND"] == "dummy"


def test_open_the_log_without_xdg_open_shows_its_path_in_a_notification(tmp_path, monkeypatch):
    from sarai.daemon.paths import Paths
    from sarai.daemon.tray.app import Tray

    class Shown:
        def __init__(self):
            self.notes = []

        def send(self, summary, body="", **kw):
            self.notes.append((summary, body))
            return 1

    paths = Paths(tmp_path / "config.yaml", tmp_path / "data", tmp_path / "state",
                  tmp_path / "run")
    tray = Tray(paths)
    tray._notifier = shown = Shown()
    log = tmp_path / "state" / "daemon.log"
    tray._open_log()  # no log yet
    log.parent.mkdir(parents=True)
    log.write_text("a line\n")
    monkeypatch.setattr("shutil.which", lambda name: None)  # no xdg-open
    tray._open_log()
    assert shown.notes[0] == ("SARAi: no log yet", f"{log} does not exist yet.")
    summary, body = shown.notes[1]
    assert summary == "SARAi's log" and body.startswith(f"{log}\n")
    assert "xdg-open is not installed" in body and "sarai logs" in body
