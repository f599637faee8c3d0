"""The daemon (`sarai run`): owns the voice loop, model residency and the control socket.

It starts the control socket first (so `sarai status` answers while models load), then the
assistant and the voice loop, and tells systemd it is ready. From then on its main thread
supervises: a voice loop that died is restarted with backoff, the watchdog is fed, and a
stop request (SIGTERM, SIGINT, `quit`) leads to a clean shutdown: the answer in progress is
cancelled, the audio devices closed, the models unloaded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from sarai.daemon.app import Context, build_assistant
from sarai.daemon.control.handlers import dispatch
from sarai.daemon.control.hub import EventHub
from sarai.daemon.control.protocol import Request
from sarai.daemon.control.server import ControlServer
from sarai.daemon.control.wire import socket_path
from sarai.daemon.conversation.core import ConversationCore
from sarai.daemon.conversation.turn import Assistant
from sarai.daemon.conversation.voice_loop import VoiceLoop
from sarai.daemon.events import Event, EventKind, ListenMode, State
from sarai.daemon.service.notify import Notifier
from sarai.daemon.service.parts import Restarter, VoicePart
from sarai.daemon.service.residency import DaemonResidency, ResidencyView
from sarai.daemon.service.turn_log import TurnLog
from sarai.models import memory
from sarai.models.errors import ModelError
from sarai.models.settings import Tier

log = logging.getLogger(__name__)

_SUPERVISE_TICK_S = 0.25
_READY_WAIT_S = 5.0  # how long READY waits for the microphone's first audio


class Daemon:
    """One running SARAi. `run()` blocks until a stop is requested, then shuts down."""

    def __init__(self, ctx: Context, *, notifier: Notifier | None = None,
                 on_event: Callable[[Event], None] | None = None, journal: bool = False) -> None:
        self.ctx = ctx
        self.settings = ctx.config.daemon
        self.hub = EventHub()
        self.notifier = notifier or Notifier()
        self.journal = journal
        self.started_at = time.time()
        # Until the conversation core exists (models still loading), the state is the
        # daemon's own; from then on the core owns state, mode, history and turn count.
        self._startup: tuple[State, str | None] = (State.IDLE, None)
        state_dir = ctx.paths.state_dir
        self.turn_log = TurnLog(state_dir / "turns.jsonl") if self.settings.turn_log else None
        self.log_file = state_dir / "daemon.log" if self.settings.log_file else None
        self.assistant: Assistant | None = None
        self.core: ConversationCore | None = None
        self.residency: DaemonResidency | None = None
        self.voice = VoicePart(self._make_loop)
        self.restarter = Restarter(
            self.voice, self._report_failure, backoff_s=self.settings.restart_backoff_s,
            backoff_max_s=self.settings.restart_backoff_max_s,
        )
        self._stop = threading.Event()
        self._stop_reason = ""
        self._server = ControlServer(
            socket_path(ctx.paths.runtime_dir), self._handle, self.hub, self.greeting,
            max_line=self.settings.max_request_kib * 1024,
        )
        self._server_started = False
        self._last_status = ""
        self.hub.subscribe(self._track)
        if on_event is not None:
            self.hub.subscribe(on_event)

    # --- lifecycle --------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the daemon to shut down (safe from signal handlers and other threads)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def loop(self) -> VoiceLoop | None:
        return self.voice.loop if self.restarter.running else None

    def run(self) -> int:
        """Start everything, supervise until stopped, shut down; the exit status."""
        self.publish_state(State.LOADING, "starting")
        self._server.start()
        self._server_started = True
        try:
            self._start_parts()
            self._await_microphone()
            if not self._stop.is_set():
                memory.settle()  # what is loaded stays: later collections skip it
                self.notifier.ready(self.status_line())
                log.info("ready (pid %d, state %s)", os.getpid(), self.state)
                self._supervise()
        finally:
            self._shutdown()
        return 0

    def _start_parts(self) -> None:
        assistant = build_assistant(self.ctx, hear=True, speak=True)
        self.residency = DaemonResidency(assistant.registry, self._residency_changed)
        self.assistant = assistant
        core = ConversationCore(assistant, self.ctx.config.listen, self.hub.publish,
                                mode=self.ctx.config.listen.mode,
                                history_size=self.settings.history_size,
                                vad=self.ctx.config.audio.vad)
        core.start()
        self.core = core
        note = assistant.registry.starter_notice()
        if note:
            log.warning("%s", note)
        pinned = [Tier(v.tier) for v in self.residency.snapshot().tiers if v.pinned]
        for tier in pinned:
            if not self._stop.is_set():
                core.loading(tier.value)
                try:
                    self.residency.load(tier)
                except ModelError as exc:  # its turns fall back to another tier
                    log.error("cannot preload %s: %s", tier, exc)
                finally:
                    core.loading(None)
        if not self._stop.is_set():
            self.restarter.start()  # a failure is reported through _report_failure

    def _await_microphone(self) -> None:
        """Ready means listening: wait (a few seconds at most) for the microphone's audio to
        flow, for a mode that does not listen, or for the voice loop to fail."""
        deadline = time.monotonic() + _READY_WAIT_S
        while (self.state is State.IDLE and self.restarter.running
               and not self._stop.is_set() and time.monotonic() < deadline):
            time.sleep(0.02)

    def _supervise(self) -> None:
        ping_every = self.notifier.watchdog_s
        next_ping = 0.0
        while not self._stop.wait(_SUPERVISE_TICK_S):
            self.restarter.check()
            now = time.monotonic()
            if ping_every and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + ping_every

    def _shutdown(self) -> None:
        t0 = time.monotonic()
        budget = self.settings.stop_timeout_s
        log.info("shutting down (%s)", self._stop_reason or "start-up failed")
        self.notifier.stopping()
        self.hub.publish(Event(EventKind.LOG, {"level": "info",
                                               "message": "SARAi is shutting down"}))
        if self._server_started:
            self._server.close()
        idle = True
        if self.core is not None:
            # Cuts the answer, refuses what is queued, waits for the model to stop (one token
            # or one batch of prompt away).
            idle = self.core.stop(timeout=budget / 2)
        self.restarter.stop(timeout=budget / 4)  # closes the devices
        if self.residency is not None:
            if idle:
                self.residency.close()
                log.info("models unloaded")
            else:  # freeing a model under a running decode would crash; the exit frees it
                log.warning("a model was still busy; it is freed as the process exits")
        self.notifier.close()
        log.info("stopped in %.1f s", time.monotonic() - t0)

    def _make_loop(self) -> VoiceLoop:
        assert self.assistant is not None and self.core is not None
        return VoiceLoop(self.ctx.config.audio, self.assistant, self.hub.publish,
                         listen=self.ctx.config.listen, core=self.core)

    # --- events -----------------------------------------------------------------------

    def publish_state(self, state: State, message: str | None = None) -> None:
        """The daemon's own state while it starts (the core's afterwards)."""
        self._startup = (state, message)
        self.hub.publish(Event(EventKind.STATE, {"state": state.value, "message": message}))

    @property
    def state(self) -> State:
        return self.core.state if self.core is not None else self._startup[0]

    @property
    def message(self) -> str | None:
        return self.core.view.message if self.core is not None else self._startup[1]

    @property
    def mode(self) -> ListenMode:
        return self.core.mode if self.core is not None else self.ctx.config.listen.mode

    def status_line(self) -> str:
        """The state in one line, as `systemctl --user status sarai` shows it."""
        return self.state.value + (f": {self.message}" if self.message else "")

    def greeting(self) -> list[Event]:
        """What a new subscriber is told first, so it starts from the current picture."""
        events = [Event(EventKind.STATE, {"state": self.state.value, "message": self.message}),
                  Event(EventKind.MODE, {"mode": self.mode.value})]
        if self.residency is not None:
            events.append(Event(EventKind.RESIDENCY, self.residency.snapshot().as_dict()))
        return events

    def _track(self, ev: Event) -> None:
        """What the daemon does with events: systemd's status line, the error log, the turn
        log. (The state itself is the core's.)"""
        if ev.kind is EventKind.STATE:
            text = ev.data["state"] + (f": {ev.data['message']}" if ev.data.get("message")
                                       else "")
            repeated = text == self._last_status
            self._last_status = text
            self.notifier.status(text)
            if ev.data["state"] == State.ERROR and not repeated:  # retries say the same
                log.error("%s", text)
        elif ev.kind is EventKind.TURN:
            if self.turn_log is not None:
                self.turn_log.append(ev.data)
            log.info("turn: %s → %s (%s)", ev.data.get("transcript", "")[:80],
                     ev.data.get("tier"), ev.data.get("error") or "ok")

    def _residency_changed(self, view: ResidencyView) -> None:
        self.hub.publish(Event(EventKind.RESIDENCY, view.as_dict()))

    def _report_failure(self, recovered: bool, sentence: str) -> None:
        """The voice loop failed (or came back): the error state until it runs again."""
        if self.core is not None:
            self.core.device_error(None if recovered else sentence)
        elif not recovered:
            self.publish_state(State.ERROR, sentence)

    # --- control ----------------------------------------------------------------------

    def _handle(self, req: Request) -> dict[str, Any]:
        return dispatch(self, req)

    def status(self) -> dict[str, Any]:
        view = self.residency.snapshot().as_dict() if self.residency else {"models": [],
                                                                           "ram": {}}
        return {
            "state": self.state.value, "message": self.message, "mode": self.mode.value,
            "pid": os.getpid(), "uptime_s": round(time.time() - self.started_at, 1),
            "turns": self.core.view.turns if self.core is not None else 0,
            "voice_loop": self._voice_status(),
            "restarts": self.restarter.restarts, "last_error": self.restarter.last_error,
            "microphone_lost": self.loop.mic_errors if self.loop is not None else 0,
            "models": view["models"], "ram": view["ram"],
            "log_file": str(self.log_file) if self.log_file else None,
            "turn_log": str(self.turn_log.path) if self.turn_log else None,
            "journal": self.journal, "socket": str(self._server.path),
        }

    def _voice_status(self) -> str:
        if self.restarter.running:
            return "running"
        wait = self.restarter.retry_in_s
        return f"restarting in {wait:.0f} s" if wait is not None else "stopped"
