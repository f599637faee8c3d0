"""`sarai tray`: the tray icon, a separate process attached to the daemon's event stream.

The daemon runs headless (under systemd); the tray lives in the desktop session and follows
`subscribe`, redrawing the icon, tooltip and menu on every event, and reconnecting when the
daemon restarts. Menu actions are sent as control requests on a worker thread, so a model
load never freezes the menu.

pystray backends, best first: AppIndicator (StatusNotifierItem; GNOME, KDE, most panels) when
a StatusNotifierWatcher runs on the session bus, else GTK's status icon (XEmbed trays such as
trayer, xfce4-panel, i3bar), both needing PyGObject; without it, the `xorg` backend (python-xlib)
draws the icon but has no menu.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from sarai.daemon.control.client import ControlClient
from sarai.daemon.control.wire import ControlError, socket_path
from sarai.daemon.paths import Paths
from sarai.daemon.tray.icon import render_icon
from sarai.daemon.tray.menu import Commands, Entry, TrayModel, TrayView, build_menu

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
HAS_MENU = {"appindicator": True, "gtk": True, "xorg": False}


class TrayError(ControlError):
    """The tray cannot be shown; str() says why."""


def _sni_watcher_running() -> bool:
    """Whether a StatusNotifierItem host (what AppIndicator icons need) is on the session bus."""
    try:
        import gi

        gi.require_version("Gio", "2.0")
        from gi.repository import Gio, GLib

        bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        reply = bus.call_sync(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "NameHasOwner", GLib.Variant("(s)", ("org.kde.StatusNotifierWatcher",)),
            GLib.VariantType("(b)"), Gio.DBusCallFlags.NONE, 500, None,
        )
        return bool(reply.unpack()[0])
    except Exception:  # no gi, no session bus: no watcher either way
        return False


def session_bus_reachable(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime = env.get("XDG_RUNTIME_DIR")
    return bool(runtime) and Path(runtime, "bus").exists()


def candidates(requested: str, sni: Callable[[], bool] = _sni_watcher_running,
               bus: Callable[[], bool] = session_bus_reachable) -> list[str]:
    """Backends to try, best first."""
    if requested != "auto":
        return [requested]
    if not bus():
        # pystray's GTK backends need the session bus (for notifications) to start at all.
        log.warning("no D-Bus session bus: the tray falls back to an icon without a menu")
        return ["xorg"]
    return ["appindicator", "gtk", "xorg"] if sni() else ["gtk", "xorg"]


def load_pystray(requested: str = "auto") -> tuple[ModuleType, str]:
    """Import pystray with the best backend that works here; (module, backend name)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise TrayError("no graphical session to show a tray icon in (DISPLAY is not set)")
    errors = []
    for name in candidates(requested):
        os.environ["PYSTRAY_BACKEND"] = name
        for mod in [m for m in sys.modules if m == "pystray" or m.startswith("pystray.")]:
            del sys.modules[mod]  # pystray picks its backend once, at import
        try:
            pystray = importlib.import_module("pystray")
        except Exception as exc:  # ImportError, or Xlib failing to reach the display
            errors.append(f"{name}: {exc}")
            log.info("tray backend %s unavailable: %s", name, exc)
            continue
        if HAS_MENU[name]:
            log.info("tray backend: %s (icon, tooltip and menu)", name)
        else:
            log.warning("tray backend: %s — icon only, no menu: menus need PyGObject with GTK 3 "
                        "(pip install PyGObject; Debian: gir1.2-gtk-3.0, "
                        "gir1.2-ayatanaappindicator3-0.1)", name)
        return pystray, name
    raise TrayError("no tray backend works here: " + "; ".join(errors))


def to_pystray(pystray: ModuleType, entries: tuple[Entry | None, ...]) -> Any:
    items = []
    for e in entries:
        if e is None:
            items.append(pystray.Menu.SEPARATOR)
            continue
        action: Any = to_pystray(pystray, e.submenu) if e.submenu else _call(e.action)
        checked = None if e.checked is None else (lambda item, v=e.checked: v)
        items.append(pystray.MenuItem(e.text, action, checked=checked, radio=e.radio,
                                      enabled=e.enabled))
    return pystray.Menu(*items)


def _call(action: Callable[[], None] | None) -> Callable[..., None]:
    def run(icon: Any = None, item: Any = None) -> None:  # noqa: ARG001
        if action is not None:
            action()

    return run


class Tray:
    """The icon, kept in step with the daemon."""

    def __init__(self, paths: Paths, backend: str = "auto") -> None:
        self._sock = socket_path(paths.runtime_dir)
        self._requested = backend
        self.model = TrayModel()
        self._stop = threading.Event()
        self._icon: Any = None
        self._pystray: ModuleType | None = None
        self.backend = ""
        self.commands = Commands(self._send, self._open_log, self.stop)

    def run(self) -> int:
        pystray, self.backend = load_pystray(self._requested)
        self._pystray = pystray
        view = self.model.view
        self._icon = pystray.Icon("sarai", render_icon(view.state, view.marks), view.tooltip(),
                                  menu=pystray.Menu(self._menu_items))
        threading.Thread(target=self._follow, name="tray-events", daemon=True).start()
        self._icon.run(setup=self._on_visible)
        return 0

    def stop(self) -> None:
        self._stop.set()
        if self._icon is not None:
            self._icon.stop()

    def _on_visible(self, icon: Any) -> None:
        icon.visible = True
        self._set_tooltip(self.model.view.tooltip())
        log.info("tray icon shown")

    def _menu_items(self):
        assert self._pystray is not None
        return to_pystray(self._pystray, build_menu(self.model.view, self.commands)).items

    # --- following the daemon ---------------------------------------------------------

    def _follow(self) -> None:
        announced = False
        while not self._stop.is_set():
            try:
                with ControlClient(self._sock, timeout=10) as c:
                    log_file = c.call("status").get("log_file")
                    self.model.update(log_file=log_file)
                    for ev in c.subscribe():
                        self._redraw(self.model.apply(ev))
                        if self._stop.is_set():
                            return
                        announced = False
            except ControlError as exc:
                if not announced:
                    log.info("%s", exc)
                    announced = True
            self._redraw(self.model.disconnected())
            self._stop.wait(RECONNECT_S)

    def _redraw(self, view: TrayView) -> None:
        icon = self._icon
        if icon is None:
            return
        icon.icon = render_icon(view.state if view.connected else None, view.marks)
        tip = view.tooltip()
        icon.title = tip
        self._set_tooltip(tip)
        if HAS_MENU.get(self.backend):
            icon.update_menu()

    def _set_tooltip(self, text: str) -> None:
        # pystray's GTK backend only sets the status icon's title, which trays do not show
        # on hover; the tooltip proper needs the GtkStatusIcon itself.
        status_icon = getattr(self._icon, "_status_icon", None)
        if status_icon is not None:
            from gi.repository import GLib

            GLib.idle_add(status_icon.set_tooltip_text, text)

    # --- actions ----------------------------------------------------------------------

    def _send(self, cmd: str, **args: Any) -> None:
        def work() -> None:
            try:
                with ControlClient(self._sock, timeout=300) as c:
                    reply = c.call(cmd, **args)
                if cmd == "push":
                    self._redraw(self.model.update(pushing=bool(reply.get("pushing"))))
                if cmd == "quit":
                    time.sleep(0.5)
                    self.stop()
            except ControlError as exc:
                log.error("%s failed: %s", cmd, exc)
                if self._icon is not None and HAS_MENU.get(self.backend):
                    with contextlib.suppress(Exception):  # notifications are a nicety
                        self._icon.notify(str(exc), f"SARAi: {cmd} failed")

        threading.Thread(target=work, name=f"tray-{cmd}", daemon=True).start()

    def _open_log(self) -> None:
        path = self.model.view.log_file
        opener = shutil.which("xdg-open")
        if not path or not Path(path).exists():
            log.error("no log file to open")
        elif opener is None:
            log.error("cannot open %s: xdg-open is not installed", path)
        else:
            subprocess.Popen([opener, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)


def run_tray(paths: Paths, backend: str = "auto") -> int:
    """Entry point of `sarai tray`."""
    # The toolkit's main loop runs in C, where Python-level signal handlers never get a turn;
    # the tray holds nothing that needs cleaning up, so the default action (exit) is right.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    return Tray(paths, backend).run()
