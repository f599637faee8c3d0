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
from sarai.daemon.tray.menu import (
    Commands,
    DeviceChoice,
    Entry,
    TrayModel,
    TrayView,
    build_menu,
)

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
SESSION_REFRESH_S = 5.0  # devices plugged in, the config file edited
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
                                      enabled=e.enabled, default=e.default))
    return pystray.Menu(*items)


def _call(action: Callable[[], None] | None) -> Callable[..., None]:
    def run(icon: Any = None, item: Any = None) -> None:  # noqa: ARG001
        if action is not None:
            action()

    return run


class Tray:
    """The icon, kept in step with the daemon."""

    def __init__(self, paths: Paths, backend: str = "auto",
                 config_arg: Path | None = None) -> None:
        self.paths = paths
        self._sock = socket_path(paths.runtime_dir)
        self._requested = backend
        self._config_arg = config_arg  # `sarai --config FILE tray`: the daemon we start gets it
        self.model = TrayModel()
        self._stop = threading.Event()
        self._icon: Any = None
        self._pystray: ModuleType | None = None
        self.backend = ""
        self.commands = Commands(self._send, self._open_log, self.stop,
                                 start_daemon=self._start_daemon,
                                 choose_device=self._choose_device,
                                 set_notify=self._set_notify)
        self._hotkey: Any = None
        self._notifier: Any = None
        self._hotkey_text: str | None = None

    def run(self) -> int:
        pystray, self.backend = load_pystray(self._requested)
        self._pystray = pystray
        self._refresh_session()
        view = self.model.view
        self._icon = pystray.Icon("sarai", render_icon(view.state, view.marks), view.tooltip(),
                                  menu=pystray.Menu(self._menu_items))
        threading.Thread(target=self._follow, name="tray-events", daemon=True).start()
        threading.Thread(target=self._session_loop, name="tray-session", daemon=True).start()
        self._icon.run(setup=self._on_visible)
        return 0

    def stop(self) -> None:
        self._stop.set()
        if self._hotkey is not None:
            self._hotkey.stop()
        if self._icon is not None:
            self._icon.stop()

    def _on_visible(self, icon: Any) -> None:
        icon.visible = True
        self._set_tooltip(self.model.view.tooltip())
        log.info("tray icon shown")
        self._start_hotkey()

    def _menu_items(self):
        assert self._pystray is not None
        return to_pystray(self._pystray, build_menu(self.model.view, self.commands)).items

    # --- following the daemon ---------------------------------------------------------

    def _follow(self) -> None:
        announced = False
        while not self._stop.is_set():
            try:
                with ControlClient(self._sock, timeout=10) as c:
                    self._redraw(self.model.connected(c.call("status")))
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

    def notify(self, summary: str, body: str = "") -> None:
        """A desktop notification from the tray (silently nothing where there is no
        notification service; the notifier logs that once)."""
        if self._notifier is None:
            from sarai.daemon.desktop.notify_bus import DesktopNotifier

            self._notifier = DesktopNotifier()
        self._notifier.send(summary, body, timeout_s=15)

    def _open_log(self) -> None:
        path = self.model.view.log_file or str(self.paths.state_dir / "daemon.log")
        opener = shutil.which("xdg-open")
        if not Path(path).exists():
            log.error("no log file to open: %s does not exist", path)
            self.notify("SARAi: no log yet", f"{path} does not exist yet.")
        elif opener is None:
            log.warning("cannot open %s: xdg-open is not installed", path)
            self.notify("SARAi's log", f"{path}\n(xdg-open is not installed to open it; "
                        "'sarai logs' shows it in a terminal)")
        else:
            subprocess.Popen([opener, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)

    # --- starting the daemon ----------------------------------------------------------

    def _start_daemon(self) -> None:
        threading.Thread(target=self._start_daemon_now, name="tray-start", daemon=True).start()

    def _start_daemon_now(self) -> None:
        from sarai.daemon.tray.starter import start_daemon

        try:
            how = start_daemon(self._config_arg)
        except TrayError as exc:
            log.error("%s", exc)
            self.notify("SARAi could not be started", str(exc))
            return
        log.info("starting SARAi (%s)", how)

    def _restart_daemon(self) -> None:
        from sarai.daemon.tray.starter import restart_daemon

        try:
            how = restart_daemon(self._sock, self._config_arg)
        except TrayError as exc:
            log.error("%s", exc)
            self.notify("SARAi could not be restarted", str(exc))
            return
        log.info("restarting SARAi (%s)", how)

    # --- the session: devices, configuration, the push-to-talk key ----------------------

    @property
    def config_file(self) -> Path:
        return self._config_arg or self.paths.config_file

    def _session_loop(self) -> None:
        while not self._stop.wait(SESSION_REFRESH_S):
            before = self.model.view
            after = self._refresh_session()
            if after != before:
                self._redraw(after)

    def _refresh_session(self) -> TrayView:
        """Devices present now, and the config file's devices and notification switches."""
        from sarai.audio.device_names import pulse_devices
        from sarai.daemon.config import ConfigError, load_config

        devices = [d for d in pulse_devices() if not d.monitor]
        changes: dict[str, Any] = {
            "inputs": tuple(DeviceChoice(d.name, d.description, d.default)
                            for d in devices if d.kind == "input"),
            "outputs": tuple(DeviceChoice(d.name, d.description, d.default)
                             for d in devices if d.kind == "output"),
        }
        default_log = self.paths.state_dir / "daemon.log"
        if self.model.view.log_file is None and default_log.is_file():
            changes["log_file"] = str(default_log)  # a daemon that ran before: its log
        try:
            config = load_config(self.config_file, required=self._config_arg is not None)
        except ConfigError as exc:
            log.debug("config not read: %s", exc)
        else:
            audio, notify = config.audio, config.notify
            changes.update(
                input_device=None if audio.input_device is None else str(audio.input_device),
                output_device=None if audio.output_device is None else str(audio.output_device),
                notify=tuple((k, bool(getattr(notify, k)))
                             for k in ("model", "microphone", "errors", "transcripts")),
            )
            self._hotkey_text = config.listen.hotkey
        return self.model.update(**changes)

    def _choose_device(self, kind: str, name: str | None) -> None:
        def work() -> None:
            from sarai.daemon.config import ConfigError
            from sarai.daemon.desktop.config_edit import set_keys

            key = "input_device" if kind == "input" else "output_device"
            try:
                set_keys(self.config_file, {("audio", key): name})
            except ConfigError as exc:
                log.error("%s", exc)
                self.notify("SARAi: the device was not changed", str(exc))
                return
            log.info("audio.%s set to %s", key, name)
            self._redraw(self._refresh_session())
            if self.model.view.connected:
                self._restart_daemon()  # the daemon opens its devices at start

        threading.Thread(target=work, name="tray-device", daemon=True).start()

    def _set_notify(self, kind: str, on: bool) -> None:
        from sarai.daemon.config import ConfigError
        from sarai.daemon.desktop.config_edit import set_keys

        try:
            set_keys(self.config_file, {("notify", kind): on})
        except ConfigError as exc:
            log.error("%s", exc)
            return
        log.info("notify.%s set to %s", kind, on)
        self._redraw(self._refresh_session())

    def _start_hotkey(self) -> None:
        text = self._hotkey_text
        if not text:
            return
        from sarai.daemon.desktop.hotkey import HotkeyUnavailable, PushKey, PushSender, listen
        from sarai.daemon.desktop.keys import HotkeyError, parse_hotkey

        sender = PushSender(self.paths, on_error=lambda text: self.notify(
            "SARAi: push-to-talk key", text))
        key = PushKey(sender)
        try:
            self._hotkey = listen(text, key.pressed, key.released,
                                  on_error=lambda why: self._redraw(
                                      self.model.update(hotkey=None, hotkey_problem=why)))
        except HotkeyUnavailable as exc:
            log.error("push-to-talk key: %s (push-to-talk still works from this menu)", exc)
            self._redraw(self.model.update(hotkey_problem=str(exc)))
            self.notify("SARAi: push-to-talk key unavailable",
                        f"{exc}. Push-to-talk still works from the tray menu.")
            return
        try:
            label = parse_hotkey(text).label
        except HotkeyError:
            label = text
        self._redraw(self.model.update(hotkey=label, hotkey_problem=None))


def run_tray(paths: Paths, backend: str = "auto", config: Path | None = None) -> int:
    """Entry point of `sarai tray`."""
    # The toolkit's main loop runs in C, where Python-level signal handlers never get a turn;
    # the tray holds nothing that needs cleaning up, so the default action (exit) is right.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    return Tray(paths, backend, config).run()
