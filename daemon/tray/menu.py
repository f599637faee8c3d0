"""What the tray shows, independent of the toolkit: the view built from daemon events, its
tooltip, and the menu as plain entries (turned into a pystray menu by the tray)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sarai.daemon.events import ListenMode, State
from sarai.daemon.tray.icon import TierMark
from sarai.models.settings import Tier


@dataclass(frozen=True)
class TierInfo:
    tier: str
    model: str = ""
    resident: bool = False
    pinned: bool = False
    starter: bool = False


@dataclass(frozen=True)
class TrayView:
    """Everything the icon, tooltip and menu are drawn from."""

    connected: bool = False
    state: State | None = None
    message: str | None = None
    mode: ListenMode | None = None
    pushing: bool = False
    tiers: tuple[TierInfo, ...] = tuple(TierInfo(t.value) for t in Tier)
    used_mb: float | None = None
    budget_mb: float | None = None
    log_file: str | None = None

    @property
    def marks(self) -> tuple[TierMark, ...]:
        return tuple(TierMark(t.tier, t.resident and self.connected, t.pinned) for t in self.tiers)

    def tooltip(self) -> str:
        if not self.connected:
            return "SARAi is not running"
        head = f"SARAi — {self.state}" + (f": {self.message}" if self.message else "")
        lines = [head, f"mode: {self.mode}"]
        resident = [t for t in self.tiers if t.resident]
        if resident:
            lines += [f"{t.tier}: {t.model}" + (" (pinned)" if t.pinned else "")
                      for t in resident]
        else:
            lines.append("no model resident")
        if self.used_mb is not None:
            budget = f" / {self.budget_mb / 1024:.1f} GB budget" if self.budget_mb else ""
            lines.append(f"RAM {self.used_mb / 1024:.2f} GB{budget}")
        return "\n".join(lines)


class TrayModel:
    """The current TrayView, updated from the event stream (any thread)."""

    def __init__(self) -> None:
        self._view = TrayView()
        self._lock = threading.Lock()

    @property
    def view(self) -> TrayView:
        with self._lock:
            return self._view

    def update(self, **changes: Any) -> TrayView:
        with self._lock:
            self._view = replace(self._view, **changes)
            return self._view

    def disconnected(self) -> TrayView:
        with self._lock:
            self._view = TrayView(log_file=self._view.log_file)
            return self._view

    def apply(self, event: dict[str, Any]) -> TrayView:
        """Fold one event from `subscribe` into the view."""
        kind = event.get("event")
        if kind == "state":
            return self.update(connected=True, state=State(event["state"]),
                               message=event.get("message"))
        if kind == "mode":
            mode = ListenMode(event["mode"])
            pushing = self.view.pushing and mode is ListenMode.PUSH
            return self.update(connected=True, mode=mode, pushing=pushing)
        if kind == "residency":
            tiers = tuple(
                TierInfo(m["tier"], m.get("model", ""), bool(m.get("resident")),
                         bool(m.get("pinned")), bool(m.get("starter")))
                for m in event.get("models", [])
            )
            ram = event.get("ram") or {}
            return self.update(connected=True, tiers=tiers or self.view.tiers,
                               used_mb=ram.get("used_mb"), budget_mb=ram.get("budget_mb"))
        return self.view


Action = Callable[[], None]


@dataclass(frozen=True)
class Entry:
    """One menu line. `checked` None: no check box; `radio`: drawn as a radio button."""

    text: str
    action: Action | None = None
    checked: bool | None = None
    radio: bool = False
    enabled: bool = True
    submenu: tuple[Entry | None, ...] = field(default_factory=tuple)


SEPARATOR = None
_MODES = (
    (ListenMode.ALWAYS, "Always listening"),
    (ListenMode.WAKE, "After the wake word"),
    (ListenMode.PUSH, "Push to talk"),
    (ListenMode.MUTED, "Muted"),
)


class Commands:
    """What menu entries do; `send(cmd, **args)` talks to the daemon (without blocking)."""

    def __init__(self, send: Callable[..., None], open_log: Action, quit_tray: Action) -> None:
        self.send = send
        self.open_log = open_log
        self.quit_tray = quit_tray


def build_menu(view: TrayView, cmd: Commands) -> tuple[Entry | None, ...]:
    """The tray menu for `view`."""
    if not view.connected:
        return (Entry("SARAi is not running", enabled=False), SEPARATOR,
                Entry("Close the tray icon", cmd.quit_tray))
    title = f"SARAi — {view.state}" + (f" ({view.message})" if view.message else "")
    entries: list[Entry | None] = [Entry(title, enabled=False), SEPARATOR]
    for mode, label in _MODES:
        entries.append(Entry(label, _bind(cmd.send, "mode", mode=mode.value),
                             checked=view.mode is mode, radio=True))
    push_on = view.mode is ListenMode.PUSH
    entries.append(Entry("Talking (push-to-talk)",
                         _bind(cmd.send, "push", action="stop" if view.pushing else "start"),
                         checked=view.pushing, enabled=push_on))
    entries.append(SEPARATOR)
    for t in view.tiers:
        label = f"{t.tier}: {t.model or '?'}" + (" (starter)" if t.starter else "")
        entries.append(Entry(label, checked=t.resident, submenu=(
            Entry("Load", _bind(cmd.send, "models", action="load", tier=t.tier),
                  enabled=not t.resident),
            Entry("Unload", _bind(cmd.send, "models", action="unload", tier=t.tier),
                  enabled=t.resident and not t.pinned),
            Entry("Pin (keep resident)",
                  _bind(cmd.send, "models", action="unpin" if t.pinned else "pin", tier=t.tier),
                  checked=t.pinned),
        )))
    if view.used_mb is not None:
        budget = f" of {view.budget_mb / 1024:.1f} GB" if view.budget_mb else ""
        entries.append(Entry(f"RAM {view.used_mb / 1024:.2f} GB used{budget}", enabled=False))
    entries += [SEPARATOR,
                Entry("Open the log", cmd.open_log, enabled=view.log_file is not None),
                Entry("Quit SARAi", _bind(cmd.send, "quit")),
                Entry("Close the tray icon", cmd.quit_tray)]
    return tuple(entries)


def _bind(send: Callable[..., None], command: str, **args: Any) -> Action:
    def action() -> None:
        send(command, **args)

    return action
