"""Desktop notifications from the daemon's events: what is worth a notice, and sending it.

`attach(hub, ctx)` subscribes to the daemon's event hub. Events are queued and turned into
notices on a thread of their own (hub listeners must return at once; a D-Bus call may not).
Each kind (NoteKind) is off until switched on in the `notify:` section of the configuration
file; the file is read again when it changes, so the tray's switches apply without a restart.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sarai.daemon.desktop.notify_bus import DesktopNotifier, Urgency
from sarai.daemon.desktop.settings import NoteKind, NotifySettings
from sarai.daemon.events import Event, EventKind, State

if TYPE_CHECKING:
    from sarai.daemon.app import Context
    from sarai.daemon.control.hub import EventHub

log = logging.getLogger(__name__)

_BODY_CHARS = 300


@dataclass(frozen=True)
class Notice:
    kind: NoteKind
    summary: str
    body: str = ""
    urgency: Urgency = Urgency.NORMAL
    slot: str = ""  # notices in the same slot replace each other (microphone lost → back)


def _short(text: str, limit: int = _BODY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _about_microphone(message: str) -> bool:
    return "microphone" in message.lower()


class NoticeRules:
    """Turns the event stream into notices; remembers just enough to report changes once
    (a missing microphone is retried every few seconds, each time with the same error)."""

    def __init__(self) -> None:
        self._mic_lost = False
        self._last_error: str | None = None

    def notices(self, ev: dict[str, Any]) -> list[Notice]:
        kind = ev.get("event")
        if kind == EventKind.STATE:
            return self._state(ev.get("state"), ev.get("message") or "")
        if kind == EventKind.TURN:
            return self._turn(ev)
        if kind == EventKind.LOG and ev.get("level") in ("error", "critical"):
            return [Notice(NoteKind.ERRORS, "SARAi: error", _short(ev.get("message", "")),
                           Urgency.CRITICAL)]
        return []

    def _state(self, state: str | None, message: str) -> list[Notice]:
        if state == State.ERROR:
            if _about_microphone(message):
                if self._mic_lost:
                    return []
                self._mic_lost = True
                return [Notice(NoteKind.MICROPHONE, "SARAi: microphone lost", _short(message),
                               Urgency.CRITICAL, slot="microphone")]
            if message == self._last_error:
                return []
            self._last_error = message
            return [Notice(NoteKind.ERRORS, "SARAi: error", _short(message) or "see the log",
                           Urgency.CRITICAL)]
        out = []
        if self._mic_lost and state in (State.LISTENING, State.MUTED, State.IDLE):
            self._mic_lost = False
            out.append(Notice(NoteKind.MICROPHONE, "SARAi: microphone back",
                              "Listening again." if state != State.MUTED else "Muted.",
                              slot="microphone"))
        if state not in (State.LOADING, State.THINKING):
            self._last_error = None
        return out

    def _turn(self, rec: dict[str, Any]) -> list[Notice]:
        out = []
        reason, error = rec.get("reason") or "", rec.get("error") or ""
        if "(fell back to " in reason:
            detail = reason.split("(fell back to ", 1)[1].rstrip(")")
            answered, _, why = detail.partition(": ")
            out.append(Notice(NoteKind.MODEL, "SARAi: a model could not be used",
                              _short(f"{why} — {answered} answered instead.")))
        elif error and ("unavailable" in error or "failed" in error or "refused" in error):
            out.append(Notice(NoteKind.MODEL, "SARAi: no model could answer", _short(error),
                              Urgency.CRITICAL))
        elif error:
            out.append(Notice(NoteKind.ERRORS, "SARAi: the turn failed", _short(error),
                              Urgency.CRITICAL))
        heard = (rec.get("transcript") or "").strip()
        if heard:
            reply = (rec.get("reply") or "").strip()
            tier = rec.get("tier") or "SARAi"
            body = f"{tier}: {reply}" if reply else (rec.get("reason") or "")
            out.append(Notice(NoteKind.TRANSCRIPTS, _short(f"“{heard}”", 120), _short(body),
                              Urgency.LOW))
        return out


class SettingsFile:
    """The `notify:` settings, read again from the configuration file when it changes."""

    def __init__(self, path: Path | None, settings: NotifySettings) -> None:
        self.path = path
        self.settings = settings
        self._stamp = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns if self.path is not None else None
        except OSError:
            return None

    def current(self) -> NotifySettings:
        stamp = self._mtime()
        if stamp == self._stamp:
            return self.settings
        self._stamp = stamp
        from sarai.daemon.config import ConfigError, load_config

        try:
            self.settings = load_config(self.path).notify
            log.info("notification settings: %s", self.settings.model_dump())
        except ConfigError as exc:  # keep what worked; the file is being edited
            log.warning("notification settings unchanged: %s", exc)
        return self.settings


class Sender(Protocol):
    def send(self, summary: str, body: str = "", *, urgency: Urgency = ...,
             timeout_s: float = ..., replaces: int = ...) -> int | None: ...


class Notifications:
    """Event listener + worker thread: notices for the kinds switched on, sent in order."""

    def __init__(self, settings: SettingsFile, sender: Sender | None = None) -> None:
        self._settings = settings
        self._sender = sender or DesktopNotifier()
        self._rules = NoticeRules()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=500)
        self._slots: dict[str, int] = {}
        self.sent: deque[Notice] = deque(maxlen=50)  # the latest shown, newest last
        self._thread = threading.Thread(target=self._work, name="notifications", daemon=True)
        self._thread.start()

    def listener(self, event: Event) -> None:
        # A stuck notification service must not hold the daemon up: drop, never wait.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(event.as_dict())

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _work(self) -> None:
        while (ev := self._queue.get()) is not None:
            try:
                settings = self._settings.current()
                for notice in self._rules.notices(ev):
                    if settings.on(notice.kind):
                        self._show(notice, settings)
            except Exception:  # one bad event must not end notifications
                log.exception("cannot turn an event into a notification")

    def _show(self, notice: Notice, settings: NotifySettings) -> None:
        replaces = self._slots.get(notice.slot, 0) if notice.slot else 0
        got = self._sender.send(notice.summary, notice.body, urgency=notice.urgency,
                                timeout_s=settings.timeout_s, replaces=replaces)
        if got is not None:
            self.sent.append(notice)
            if notice.slot:
                self._slots[notice.slot] = got


def attach(hub: EventHub, ctx: Context) -> Callable[[], None]:
    """Show desktop notifications for the daemon's events, as `ctx.config.notify` (and later
    changes to the configuration file) says; returns the function that stops them."""
    notes = Notifications(SettingsFile(ctx.paths.config_file, ctx.config.notify))
    unsubscribe = hub.subscribe(notes.listener)

    def detach() -> None:
        unsubscribe()
        notes.close()

    return detach
