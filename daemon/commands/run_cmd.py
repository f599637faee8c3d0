"""`sarai run`: hands-free on the microphone until interrupted."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from daemon.app import Context, build_assistant
from daemon.events import Event, EventKind
from daemon.voice_loop import VoiceLoop


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="listen on the microphone and answer aloud until interrupted",
        description=(
            "Hands-free: listen on the microphone, answer each utterance on the speaker. "
            "Stop with Ctrl+C (or SIGTERM)."
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON turn record per line")
    p.add_argument("--max-turns", type=int, metavar="N", help="stop after N answered turns")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace, ctx: Context) -> int:
    from daemon.report import format_turn
    from daemon.turn import TurnRecord

    assistant = build_assistant(ctx, hear=True, speak=True)
    note = assistant.registry.starter_notice()
    if note:
        print(f"sarai: {note}", file=sys.stderr, flush=True)
    assistant.registry.preload_pinned()
    done = threading.Event()
    count = 0

    def on_event(ev: Event) -> None:
        nonlocal count
        if ev.kind is EventKind.TURN:
            if args.json:
                print(json.dumps(ev.data, ensure_ascii=False), flush=True)
            else:
                print(format_turn(TurnRecord(**ev.data)) + "\n", flush=True)
            count += 1
            if args.max_turns is not None and count >= args.max_turns:
                done.set()
        elif ev.kind is EventKind.STATE and ev.data.get("message"):
            print(f"sarai: {ev.data['state']}: {ev.data['message']}", file=sys.stderr, flush=True)

    loop = VoiceLoop(ctx.config.audio, assistant, on_event, listen=ctx.config.listen)
    try:
        loop.start()
        print("Listening… (Ctrl+C to stop)", file=sys.stderr, flush=True)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()
        assistant.registry.close()
    return 0
