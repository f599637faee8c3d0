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
class DeviceChoice:
    """A microphone or speaker the Devices menu offers: `name` goes into the config."""

    name: str
    description: str
    default: bool = False  # the desktop's default device


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
    # From the desktop session and the configuration file, not from the daemon:
    inputs: tuple[DeviceChoice, ...] = ()
    outputs: tuple[DeviceChoice, ...] = ()
    input_device: str | None = None  # as configured (None: the default)
    output_device: str | None = None
    notify: tuple[tuple[str, bool], ...] = ()  # (kind, on) in menu order
    hotkey: str | None = None  # the push-to-talk key's label, when it is grabbed
    hotkey_problem: str | None = None  # why the configured key does not work

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
        """Nothing is known about a daemon that is gone (what a new one has resident comes
        with its greeting); what the session and the config file say stays."""
        with self._lock:
            v = self._view
            self._view = TrayView(log_file=v.log_file, inputs=v.inputs, outputs=v.outputs,
                                  input_device=v.input_device, output_device=v.output_device,
                                  notify=v.notify, hotkey=v.hotkey,
                                  hotkey_problem=v.hotkey_problem)
            return self._view

    def connected(self, status: dict[str, Any]) -> TrayView:
        """A (re)connected daemon's `status` reply: the whole picture at once, so nothing
        from the daemon before it is shown a moment longer."""
        self.disconnected()
        self.apply({"event": "residency", "models": status.get("models", []),
                    "ram": status.get("ram") or {}})
        if status.get("state"):
            self.apply({"event": "state", "state": status["state"],
                        "message": status.get("message")})
        if status.get("mode"):
            self.apply({"event": "mode", "mode": status["mode"]})
        return self.update(log_file=status.get("log_file"))

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
    default: bool = False  # what a left click on the icon does


SEPARATOR = None
_MODES = (
    (ListenMode.ALWAYS, "Always listening"),
    (ListenMode.WAKE, "After the wake word"),
    (ListenMode.PUSH, "Push to talk"),
    (ListenMode.MUTED, "Muted"),
)


NOTIFY_LABELS = {
    "model": "A model could not be loaded",
    "microphone": "Microphone lost or back",
    "errors": "Errors",
    "transcripts": "Every transcript",
}


def _nothing(*_: Any) -> None:
    pass


class Commands:
    """What menu entries do; `send(cmd, **args)` talks to the daemon (without blocking)."""

    def __init__(self, send: Callable[..., None], open_log: Action, quit_tray: Action, *,
                 start_daemon: Action = _nothing,
                 choose_device: Callable[[str, str | None], None] = _nothing,
                 set_notify: Callable[[str, bool], None] = _nothing) -> None:
        self.send = send
        self.open_log = open_log
        self.quit_tray = quit_tray
        self.start_daemon = start_daemon
        self.choose_device = choose_device  # ("input" | "output", name or None)
        self.set_notify = set_notify  # (kind, on)


def _devices_menu(view: TrayView, cmd: Commands) -> Entry:
    def choices(kind: str, items: tuple[DeviceChoice, ...], chosen: str | None
                ) -> tuple[Entry | None, ...]:
        known = {d.name for d in items} | {d.description for d in items}
        entries: list[Entry | None] = [
            Entry("System default", lambda: cmd.choose_device(kind, None),
                  checked=chosen is None, radio=True)]
        for d in items:
            label = d.description + (" (default)" if d.default else "")
            entries.append(Entry(label, lambda n=d.name: cmd.choose_device(kind, n),
                                 checked=chosen in (d.name, d.description), radio=True))
        if chosen is not None and chosen not in known:
            entries.append(Entry(f"{chosen} (not present)", checked=True, radio=True,
                                 enabled=False))
        return tuple(entries)

    return Entry("Devices", submenu=(
        Entry("Microphone", submenu=choices("input", view.inputs, view.input_device)),
        Entry("Speaker", submenu=choices("output", view.outputs, view.output_device)),
    ))


def _notify_menu(view: TrayView, cmd: Commands) -> Entry:
    return Entry("Notifications", submenu=tuple(
        Entry(NOTIFY_LABELS.get(kind, kind), lambda k=kind, v=on: cmd.set_notify(k, not v),
              checked=on)
        for kind, on in view.notify))


def build_menu(view: TrayView, cmd: Commands) -> tuple[Entry | None, ...]:
    """The tray menu for `view`."""
    if not view.connected:
        return (Entry("SARAi is not running", enabled=False), SEPARATOR,
                Entry("Start SARAi", cmd.start_daemon, default=True),
                _devices_menu(view, cmd),
                Entry("Open the log", cmd.open_log, enabled=view.log_file is not None),
                SEPARATOR,
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
    if view.hotkey:
        entries.append(Entry(f"Push-to-talk key: {view.hotkey}", enabled=False))
    elif view.hotkey_problem:
        entries.append(Entry(f"Push-to-talk key unavailable: {view.hotkey_problem}",
                             enabled=False))
    entries.append(SEPARATOR)
    for t in view.tiers:
        # Residency is in the text, not a check box: GTK toggles a check item whose
        # submenu opens, which showed the opposite of the truth while it was open.
        mark = "● " if t.resident else "○ "
        label = f"{mark}{t.tier}: {t.model or '?'}" + (" (starter)" if t.starter else "")
        entries.append(Entry(label, submenu=(
            Entry("Loaded" if t.resident else "Not loaded", enabled=False),
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
    entries += [SEPARATOR, _devices_menu(view, cmd)]
    if view.notify:
        entries.append(_notify_menu(view, cmd))
    entries += [Entry("Open the log", cmd.open_log, enabled=view.log_file is not None),
                Entry("Quit SARAi", _bind(cmd.send, "quit")),
                Entry("Close the tray icon", cmd.quit_tray)]
    return tuple(entries)


def _bind(send: Callable[..., None], command: str, **args: Any) -> Action:
    def action() -> None:
        send(command, **args)

    return action
