"""The global push-to-talk key: grabbed in the desktop session, sent to the daemon.

The daemon may run as a systemd user service with no access to the keyboard, so the key is
grabbed here, in the session (the tray, or `sarai hotkey`), and each press and release
becomes `push start` / `push stop` on the control socket.

Two ways to grab it: the XDG GlobalShortcuts portal (Wayland desktops and others that offer
it; the desktop may ask the user to confirm the key) and, otherwise, an X11 passive key grab
(python-xlib). Held, SARAi listens while the key is down. Where a press is short (a tap), or
where no release ever arrives (some portals report none), the key toggles instead: talking
until it is pressed again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sarai.daemon.desktop.keys import Hotkey, HotkeyError, parse_hotkey

if TYPE_CHECKING:
    from sarai.daemon.paths import Paths

log = logging.getLogger(__name__)

TAP_S = 0.35  # a press shorter than this is a tap: it toggles instead of holding


class HotkeyUnavailable(Exception):
    """The key cannot be used here; str() is one sentence for the user."""


class PushKey:
    """Hold-to-talk, or tap-to-toggle, from key presses and releases.

    A press starts talking, or, while talking, stops it. A release stops talking only when
    the key was held longer than a tap; after a tap SARAi keeps listening until the next
    press. So hold-to-talk works where releases arrive and toggling where they do not.
    """

    def __init__(self, send: Callable[[bool], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self._clock = clock
        self.talking = False
        self._pressed_at: float | None = None  # the press that started talking, if held

    def pressed(self) -> None:
        if self.talking:
            self.talking = False
            self._pressed_at = None
            self._send(False)
            return
        self.talking = True
        self._pressed_at = self._clock()
        self._send(True)

    def released(self) -> None:
        if not self.talking or self._pressed_at is None:
            return
        held = self._clock() - self._pressed_at
        self._pressed_at = None
        if held >= TAP_S:
            self.talking = False
            self._send(False)


class PushSender:
    """Sends push start/stop to the daemon in order, off the key-handling thread.

    Failures (SARAi not running, not in push mode) are logged once per distinct message and
    handed to `on_error` (the tray shows them)."""

    def __init__(self, paths: Paths, on_error: Callable[[str], None] | None = None) -> None:
        from sarai.daemon.control.wire import socket_path

        self._sock = socket_path(paths.runtime_dir)
        self._on_error = on_error
        self._last_error: str | None = None
        self._queue: queue.Queue[bool | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="hotkey-push", daemon=True)
        self._thread.start()

    def __call__(self, talking: bool) -> None:
        self._queue.put(talking)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _work(self) -> None:
        from sarai.daemon.control.client import ControlClient
        from sarai.daemon.control.wire import ControlError

        while (talking := self._queue.get()) is not None:
            action = "start" if talking else "stop"
            try:
                with ControlClient(self._sock, timeout=10) as c:
                    c.call("push", action=action)
                log.info("push %s", action)
                self._last_error = None
            except ControlError as exc:
                text = str(exc)
                if text != self._last_error:
                    log.error("push-to-talk key: push %s failed: %s", action, text)
                    if self._on_error is not None:
                        self._on_error(text)
                self._last_error = text


class Listener(Protocol):
    kind: str

    def stop(self) -> None: ...


# --- X11 ------------------------------------------------------------------------------

class X11Grab:
    """A passive grab of the key on the root window, with a thread reading its events."""

    kind = "x11"

    def __init__(self, hotkey: Hotkey, on_press: Callable[[], None],
                 on_release: Callable[[], None], display: str | None = None) -> None:
        try:
            from Xlib import X, error
            from Xlib import display as xdisplay
        except ImportError as exc:
            raise HotkeyUnavailable(f"python-xlib is not installed ({exc})") from exc
        self.hotkey = hotkey
        self._on_press, self._on_release = on_press, on_release
        try:
            self._d = xdisplay.Display(display)
        except Exception as exc:  # Xlib raises its own DisplayError family
            raise HotkeyUnavailable(f"cannot reach the X display: {exc}") from exc
        self._X = X
        self._root = self._d.screen().root
        self._keycode = self._d.keysym_to_keycode(hotkey.keysym)
        if not self._keycode:
            self._d.close()
            raise HotkeyUnavailable(f"no key on this keyboard types {hotkey.key!r}")
        masks = {"ctrl": X.ControlMask, "alt": X.Mod1Mask, "shift": X.ShiftMask,
                 "super": X.Mod4Mask}
        self._mask = 0
        for m in hotkey.modifiers:
            self._mask |= masks[m]
        # Caps Lock and Num Lock change the modifier state; grab with and without them.
        self._variants = [0, X.LockMask, X.Mod2Mask, X.LockMask | X.Mod2Mask]
        catch = error.CatchError(error.BadAccess)
        for extra in self._variants:
            self._root.grab_key(self._keycode, self._mask | extra, True, X.GrabModeAsync,
                                X.GrabModeAsync, onerror=catch)
        self._d.sync()
        if catch.get_error() is not None:
            self._ungrab()
            self._d.close()
            raise HotkeyUnavailable(f"{hotkey.label} is already taken by another program; "
                                    "choose another listen.hotkey")
        self._stop = threading.Event()
        self._down = False
        self._thread = threading.Thread(target=self._run, name="hotkey-x11", daemon=True)
        self._thread.start()
        log.info("push-to-talk key %s grabbed (X11)", hotkey.label)

    def _ungrab(self) -> None:
        for extra in self._variants:
            self._root.ungrab_key(self._keycode, self._mask | extra)
        self._d.sync()

    def _wait(self, seconds: float) -> bool:
        """Whether events are there (within `seconds`)."""
        if self._d.pending_events():
            return True
        ready, _, _ = select.select([self._d.fileno()], [], [], seconds)
        return bool(ready) and self._d.pending_events() > 0

    def _run(self) -> None:
        X = self._X
        held = None  # an event read ahead while checking for auto-repeat
        try:
            while not self._stop.is_set():
                if held is None and not self._wait(0.25):
                    continue
                ev, held = (held, None) if held is not None else (self._d.next_event(), None)
                if getattr(ev, "detail", None) != self._keycode:
                    continue
                if ev.type == X.KeyPress:
                    if not self._down:  # a press while down is the keyboard repeating
                        self._down = True
                        self._on_press()
                elif ev.type == X.KeyRelease:
                    # Auto-repeat sends release + press with the same timestamp while the
                    # key is held: look at what follows before calling it a release.
                    if self._wait(0.03):
                        nxt = self._d.next_event()
                        if nxt.type == X.KeyPress and getattr(nxt, "detail", None) == \
                                self._keycode and nxt.time == ev.time:
                            continue
                        held = nxt
                    self._down = False
                    self._on_release()
        except Exception:  # the display went away: the key stops working, the tray stays
            if not self._stop.is_set():
                log.exception("the push-to-talk key stopped working")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        try:
            self._ungrab()
            self._d.close()
        except Exception:  # already gone with the display
            pass


# --- XDG GlobalShortcuts portal ---------------------------------------------------------

PORTAL = "org.freedesktop.portal.Desktop"
PORTAL_PATH = "/org/freedesktop/portal/desktop"
SHORTCUTS = "org.freedesktop.portal.GlobalShortcuts"
REQUEST = "org.freedesktop.portal.Request"
SHORTCUT_ID = "push-to-talk"


def portal_available(bus=None) -> bool:
    """Whether the session bus has a portal with the GlobalShortcuts interface."""
    try:
        import gi

        gi.require_version("Gio", "2.0")
        from gi.repository import Gio

        bus = bus or Gio.bus_get_sync(Gio.BusType.SESSION, None)
        proxy = Gio.DBusProxy.new_sync(bus, Gio.DBusProxyFlags.DO_NOT_CONNECT_SIGNALS, None,
                                       PORTAL, PORTAL_PATH, SHORTCUTS, None)
        return proxy.get_cached_property("version") is not None
    except Exception:  # no gi, no bus, no portal
        return False


class PortalShortcut:
    """The key bound through the GlobalShortcuts portal; events arrive on the GLib main
    loop (the tray's, or the one `sarai hotkey` runs). `on_error(text)` reports a failure
    that happens after start (the user declined, the portal refused)."""

    kind = "portal"

    def __init__(self, hotkey: Hotkey, on_press: Callable[[], None],
                 on_release: Callable[[], None],
                 on_error: Callable[[str], None] | None = None, bus=None) -> None:
        import gi

        gi.require_version("Gio", "2.0")
        from gi.repository import Gio, GLib

        self._Gio, self._GLib = Gio, GLib
        self.hotkey = hotkey
        self._on_press, self._on_release = on_press, on_release
        self._on_error = on_error
        self._bus = bus or Gio.bus_get_sync(Gio.BusType.SESSION, None)
        self._session: str | None = None
        self._subs: list[int] = []
        self.bound = threading.Event()
        sender = self._bus.get_unique_name().lstrip(":").replace(".", "_")
        self._request_prefix = f"{PORTAL_PATH}/request/{sender}/"
        for signal in ("Activated", "Deactivated"):
            self._subs.append(self._bus.signal_subscribe(
                PORTAL, SHORTCUTS, signal, PORTAL_PATH, None, Gio.DBusSignalFlags.NONE,
                self._on_signal))
        self._request("CreateSession", self._session_created, lambda token: GLib.Variant(
            "(a{sv})", ({"handle_token": GLib.Variant("s", token),
                         "session_handle_token": GLib.Variant("s", "sarai")},)))

    def _request(self, method: str, done: Callable[[dict], None], args) -> None:
        """Call a portal method the Request way: its Response signal carries the result."""
        GLib, Gio = self._GLib, self._Gio
        token = f"sarai{int(time.monotonic() * 1e6)}"
        path = self._request_prefix + token
        sub: list[int] = []

        def response(conn, sender, obj, iface, name, params) -> None:  # noqa: ARG001
            for s in sub:
                self._bus.signal_unsubscribe(s)
            code, results = params.unpack()
            if code != 0:
                self._fail(f"the desktop declined the push-to-talk key ({method}: {code})")
                return
            done(results)

        sub.append(self._bus.signal_subscribe(PORTAL, REQUEST, "Response", path, None,
                                              Gio.DBusSignalFlags.NONE, response))
        try:
            self._bus.call_sync(PORTAL, PORTAL_PATH, SHORTCUTS, method, args(token),
                                None, Gio.DBusCallFlags.NONE, 10000, None)
        except GLib.Error as exc:
            for s in sub:
                self._bus.signal_unsubscribe(s)
            self._fail(f"the GlobalShortcuts portal refused {method}: {exc.message}")

    def _session_created(self, results: dict) -> None:
        GLib = self._GLib
        self._session = results.get("session_handle")
        if not self._session:
            self._fail("the GlobalShortcuts portal gave no session")
            return
        shortcut = (SHORTCUT_ID, {
            "description": GLib.Variant("s", "SARAi push-to-talk"),
            "preferred_trigger": GLib.Variant("s", self.hotkey.portal_trigger)})
        self._request("BindShortcuts", self._bound, lambda token: GLib.Variant(
            "(oa(sa{sv})sa{sv})", (self._session, [shortcut], "",
                                   {"handle_token": GLib.Variant("s", token)})))

    def _bound(self, results: dict) -> None:
        got = [s for s in results.get("shortcuts", []) if s[0] == SHORTCUT_ID]
        trigger = got[0][1].get("trigger_description", "") if got else ""
        log.info("push-to-talk key bound through the portal (%s)",
                 trigger or self.hotkey.portal_trigger)
        self.bound.set()

    def _on_signal(self, conn, sender, obj, iface, name, params) -> None:  # noqa: ARG002
        session, shortcut = params.unpack()[:2]
        if session != self._session or shortcut != SHORTCUT_ID:
            return
        (self._on_press if name == "Activated" else self._on_release)()

    def _fail(self, text: str) -> None:
        log.error("push-to-talk key: %s", text)
        if self._on_error is not None:
            self._on_error(text)

    def stop(self) -> None:
        for s in self._subs:
            self._bus.signal_unsubscribe(s)
        if self._session:
            with contextlib.suppress(Exception):  # the session is gone already
                self._bus.call_sync(PORTAL, self._session, "org.freedesktop.portal.Session",
                                    "Close", None, None, self._Gio.DBusCallFlags.NONE, 2000,
                                    None)


# --- choosing one ------------------------------------------------------------------------

def listen(text: str, on_press: Callable[[], None], on_release: Callable[[], None], *,
           backend: str = "auto", on_error: Callable[[str], None] | None = None) -> Listener:
    """Grab the key `text` ("<ctrl>+<alt>+space"); HotkeyUnavailable says why it cannot be.

    `backend`: "portal", "x11" or "auto" (the portal where the session has one, else X11).
    A portal binding is completed on the GLib main loop, which the caller must run.
    """
    try:
        hotkey = parse_hotkey(text)
    except HotkeyError as exc:
        raise HotkeyUnavailable(f"listen.hotkey {text!r}: {exc}") from exc
    if backend == "portal" or (backend == "auto" and portal_available()):
        try:
            return PortalShortcut(hotkey, on_press, on_release, on_error)
        except Exception as exc:
            if backend == "portal":
                raise HotkeyUnavailable(f"the GlobalShortcuts portal cannot be used: {exc}"
                                        ) from exc
            log.info("GlobalShortcuts portal unusable (%s); trying X11", exc)
    import os

    if not os.environ.get("DISPLAY"):
        raise HotkeyUnavailable("no way to grab a global key here: the desktop offers no "
                                "GlobalShortcuts portal and there is no X display (DISPLAY)")
    return X11Grab(hotkey, on_press, on_release)


def run_hotkey(text: str, paths: Paths, backend: str = "auto") -> int:
    """`sarai hotkey`: grab the key and drive the daemon until interrupted."""
    import signal

    sender = PushSender(paths)
    key = PushKey(sender)
    stop = threading.Event()
    listener = listen(text, key.pressed, key.released, backend=backend)
    print(f"Push-to-talk key {text} ready ({listener.kind}); Ctrl+C to stop.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if listener.kind == "portal":
            from gi.repository import GLib

            loop = GLib.MainLoop()
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
            loop.run()
        else:
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        if key.talking:
            sender(False)
        sender.close()
    return 0
