"""`sarai run`: the daemon — hands-free on the microphone, controlled through its socket."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sarai.daemon.app import Context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run SARAi: listen on the microphone and answer aloud until stopped",
        description=(
            "The SARAi daemon: listens on the microphone and answers each utterance on the "
            "speaker, and serves the control socket that 'sarai status', 'sarai mute', "
            "'sarai tray' … talk to. Stop it with Ctrl+C, SIGTERM or 'sarai quit'. "
            "Under systemd it reports readiness and state (Type=notify) and feeds the watchdog."
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON turn record per line")
    p.add_argument("--max-turns", type=int, metavar="N", help="stop after N answered turns")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace, ctx: Context) -> int:
    from sarai.daemon.cli.device_check import check_devices
    from sarai.daemon.cli.report import format_turn
    from sarai.daemon.conversation.record import TurnRecord
    from sarai.daemon.desktop import notifications
    from sarai.daemon.events import Event, EventKind, State
    from sarai.daemon.service.logs import setup_logging, under_journal
    from sarai.daemon.service.supervisor import Daemon
    from sarai.models import memory

    memory.for_a_long_run()  # before the models and their threads: see its comment
    # A misspelt microphone or speaker stops SARAi now, with the list of what exists,
    # rather than after the models have loaded.
    check_devices(ctx.config.audio, ctx.paths.config_file)
    journal = under_journal()
    settings = ctx.config.daemon
    log_file = ctx.paths.state_dir / "daemon.log" if settings.log_file else None
    setup_logging(logging.DEBUG if args.debug else logging.INFO, journal=journal,
                  log_file=log_file)
    announced = False
    count = 0
    daemon: Daemon

    def on_event(ev: Event) -> None:
        nonlocal announced, count
        if ev.kind is EventKind.TURN:
            if args.json:
                print(json.dumps(ev.data, ensure_ascii=False), flush=True)
            else:
                print(format_turn(TurnRecord.from_dict(ev.data)) + "\n", flush=True)
            count += 1
            if args.max_turns is not None and count >= args.max_turns:
                daemon.request_stop(f"{count} turn(s) answered")
        elif ev.kind is EventKind.STATE and not announced and \
                ev.data["state"] in (State.LISTENING, State.MUTED):
            announced = True
            print("Listening… (Ctrl+C to stop)", file=sys.stderr, flush=True)

    daemon = Daemon(ctx, on_event=on_event, journal=journal)
    stop_notifications = notifications.attach(daemon.hub, ctx)

    def on_signal(signum: int, frame) -> None:  # noqa: ARG001
        if daemon.stopping:
            os._exit(128 + signum)  # asked twice: stop waiting for a clean shutdown
        daemon.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rc = daemon.run()
    stop_notifications()
    # Everything is closed and unloaded by now. Tearing down the interpreter's modules
    # (numpy, onnxruntime, ctranslate2, llama.cpp …) would take seconds more and do nothing
    # useful, and systemd waits for the process, so leave right away.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
