"""Sending desktop notifications through the freedesktop notification service (D-Bus).

Uses PyGObject's Gio on the session bus. Without PyGObject, a session bus or a notification
service, `send` returns False and one log line says why (and one more when they work again),
so a desktop without notifications costs nothing.
"""

from __future__ import annotations

import logging
import threading
from enum import IntEnum

log = logging.getLogger(__name__)

BUS_NAME = "org.freedesktop.Notifications"
OBJECT_PATH = "/org/freedesktop/Notifications"
INTERFACE = "org.freedesktop.Notifications"
APP_NAME = "SARAi"
ICON = "audio-input-microphone"
_CALL_TIMEOUT_MS = 3000


class Urgency(IntEnum):
    LOW = 0
    NORMAL = 1
    CRITICAL = 2


class DesktopNotifier:
    """One connection to the session's notification service (thread-safe)."""

    def __init__(self, app_name: str = APP_NAME, address: str | None = None) -> None:
        self.app_name = app_name
        self.address = address  # a bus address; None: the session bus
        self._lock = threading.Lock()
        self._bus = None
        self._failing = False  # the last attempt failed (and that was logged)

    def _connect(self):
        import gi

        gi.require_version("Gio", "2.0")
        from gi.repository import Gio

        if self._bus is None or self._bus.is_closed():
            if self.address is None:
                self._bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
            else:
                flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                         | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
                self._bus = Gio.DBusConnection.new_for_address_sync(self.address, flags, None,
                                                                    None)
        return self._bus

    def send(self, summary: str, body: str = "", *, urgency: Urgency = Urgency.NORMAL,
             timeout_s: float = 8.0, replaces: int = 0) -> int | None:
        """Show a notification; its id (to replace it later), or None if none was shown."""
        with self._lock:
            try:
                from gi.repository import GLib

                bus = self._connect()
                hints = {"urgency": GLib.Variant("y", int(urgency)),
                         "desktop-entry": GLib.Variant("s", "sarai-tray")}
                args = GLib.Variant("(susssasa{sv}i)", (
                    self.app_name, replaces, ICON, summary, body, [], hints,
                    int(timeout_s * 1000) if timeout_s > 0 else 0))
                reply = bus.call_sync(BUS_NAME, OBJECT_PATH, INTERFACE, "Notify", args,
                                      GLib.VariantType("(u)"), 0, _CALL_TIMEOUT_MS, None)
            except Exception as exc:  # ImportError, no bus, no service: all the same here
                self._report(exc)
                return None
            if self._failing:
                log.info("desktop notifications work again")
                self._failing = False
            return int(reply.unpack()[0])

    def _report(self, exc: Exception) -> None:
        why = _reason(exc)
        if self._failing:
            log.debug("notification not shown: %s", why)
            return
        self._failing = True
        log.warning("desktop notifications are not shown: %s", why)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ImportError | ValueError):
        return f"PyGObject is not available ({exc})"
    text = str(exc)
    if "ServiceUnknown" in text or "was not provided by any .service" in text:
        return "no notification service runs in this session"
    if "DBUS_SESSION_BUS_ADDRESS" in text or "session bus" in text.lower():
        return "no D-Bus session bus"
    return text.splitlines()[0] if text else type(exc).__name__
