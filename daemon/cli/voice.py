"""`sarai listen` and `sarai ask`: a recording's utterances, or a typed question, answered.

Both go through the same conversation core as the microphone. `sarai ask` is the running
daemon's client when one answers on the control socket (one set of models, one history, one
speaker) and answers in its own process only when none runs; it says which it did.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sarai.daemon.cli import ask_media

if TYPE_CHECKING:
    from sarai.daemon.app import Context
    from sarai.daemon.conversation.core import ConversationCore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen",
        help="answer every utterance in a recording",
        description=(
            "Find the utterances in a recording (WAV/FLAC/OGG, any rate or channel count), "
            "answer each one and speak the answers into a WAV file or the speaker."
        ),
    )
    p.add_argument("--input", "-i", type=Path, required=True, metavar="WAV", help="recording")
    p.add_argument("--output", "-o", type=Path, metavar="WAV",
                   help="write the spoken answers here (default: play them on the speaker)")
    p.add_argument("--json", action="store_true", help="print one JSON turn record per line")
    p.set_defaults(func=_listen)

    p = sub.add_parser(
        "ask",
        help="ask a typed question; the answer is spoken and printed",
        description="Answer a typed question with the tier the router picks. When SARAi is "
                    "running, the running SARAi answers it (its models, its history, its "
                    "speaker); otherwise it is answered here.",
    )
    p.add_argument("text", nargs="?", default="", help="the question (optional with media)")
    ask_media.add_options(p)
    p.add_argument("--no-speak", action="store_true", help="print the answer only")
    p.add_argument("--output", "-o", type=Path, metavar="WAV",
                   help="write the spoken answer here instead of playing it")
    p.add_argument("--language", metavar="CODE", help="answer in this language (en, es, …)")
    p.add_argument("--json", action="store_true", help="print the turn record as JSON")
    p.add_argument("--here", action="store_true",
                   help="answer in this process even when SARAi is running")
    p.set_defaults(func=_ask, no_context=True)


def _say(line: str) -> None:
    print(f"sarai: {line}", file=sys.stderr, flush=True)


def _emit(data: dict[str, Any], as_json: bool, *, reply_only: bool = False) -> None:
    from sarai.daemon.cli.report import format_turn
    from sarai.daemon.conversation.record import TurnRecord

    if as_json:
        print(json.dumps(data, ensure_ascii=False), flush=True)
    elif reply_only:
        print(data.get("reply", ""), flush=True)
    else:
        print(format_turn(TurnRecord.from_dict(data)) + "\n", flush=True)


def _notice(ctx: Context, assistant) -> None:  # noqa: ARG001
    note = assistant.registry.starter_notice()
    if note:
        _say(note)


# --- sarai listen ------------------------------------------------------------------------

def _listen(args: argparse.Namespace, ctx: Context) -> int:
    import numpy as np

    from sarai.audio.devices import SpeakerSink
    from sarai.audio.echo import EchoCanceller
    from sarai.audio.errors import AudioError
    from sarai.audio.pcm import SAMPLE_RATE, read_audio, timed_frames
    from sarai.audio.wav_output import WavOutput
    from sarai.daemon.app import build_assistant
    from sarai.daemon.conversation.core import ConversationCore
    from sarai.daemon.conversation.frontend import FrontEnd
    from sarai.daemon.events import EventKind, ListenMode

    pcm = read_audio(args.input)
    if args.output is not None and args.output.is_dir():
        raise AudioError(f"cannot write the answers to {args.output}: it is a directory")
    assistant = build_assistant(ctx, hear=True, speak=True)
    _notice(ctx, assistant)
    assistant.registry.preload_pinned()
    output = WavOutput(args.output) if args.output else SpeakerSink(ctx.config.audio.output_device)
    # A file is read faster than it was spoken, and nobody talks over it: no speculation,
    # no early ends, no barge-in; each utterance is a turn of its own.
    listen = ctx.config.listen.model_copy(update={
        "mode": ListenMode.ALWAYS, "speculate_pause_ms": 0, "complete_silence_ms": 0,
        "barge_in": False})
    turns: list[dict] = []

    def on_event(ev) -> None:
        if ev.kind is EventKind.TURN:
            turns.append(ev.data)
            _emit(ev.data, args.json)

    core = ConversationCore(assistant, listen, on_event, inline=True)
    core.attach_output(output)
    front = FrontEnd(core, ctx.config.audio.vad, listen, EchoCanceller(cancel=False))
    tail = np.zeros(SAMPLE_RATE * ctx.config.audio.vad.end_silence_ms // 1000 + SAMPLE_RATE // 10,
                    np.int16)
    samples = np.concatenate([pcm.samples, tail])
    try:
        for frame, _ in timed_frames(samples, 0.0, front.frame_ms):
            front.hear(frame, time.perf_counter())
            _settle(core)
        front.flush()
        _settle(core)
    finally:
        core.stop()
        assistant.registry.close()
    if not turns:
        raise AudioError(f"no speech found in {args.input}")
    output.close()
    if args.output and not args.json:
        print(f"answers written to {args.output}")
    return 0


def _settle(core: ConversationCore) -> None:
    """Work through what the core has, and wait for an answer being heard to end."""
    core.pump()
    while core.view.answering is not None or core.busy:
        time.sleep(0.02)
        core.pump()


# --- sarai ask ---------------------------------------------------------------------------

def _ask(args: argparse.Namespace, ctx: Context | None) -> int:  # noqa: ARG001
    from sarai.audio.errors import AudioError

    paths = ask_media.paths(args)
    if not args.text.strip() and not paths:
        raise AudioError("nothing to ask: the question is empty")
    if args.output is not None and args.output.is_dir():
        raise AudioError(f"cannot write the answer to {args.output}: it is a directory")
    speak = not args.no_speak
    rec = None if args.here else _ask_daemon(args, paths, speak)
    where = "answered by the running SARAi"
    if rec is None:
        rec = _ask_here(args, paths, speak)
        where = "answered here" + ("" if args.here else " (SARAi is not running)")
    if args.json:
        _emit(rec, True)
    elif rec.get("reply") or not rec.get("error"):
        _emit(rec, False, reply_only=args.no_speak)
    if rec.get("error"):
        _say(f"error: {rec['error']}")
        return 1
    _say(where)
    return 0


def _ask_daemon(args: argparse.Namespace, paths: list[tuple[Path, str]],
                speak: bool) -> dict | None:
    """The running daemon's answer, or None when no daemon runs."""
    from sarai.daemon.cli.daemon_cmds import client
    from sarai.daemon.control.wire import DaemonNotRunning

    try:
        c = client(timeout=None)
    except DaemonNotRunning:
        return None
    with c:
        request: dict[str, Any] = {
            "text": args.text.strip(), "speak": speak,
            "attachments": [{"path": str(p.resolve()), "kind": k} for p, k in paths]}
        if args.output is not None:
            request["output"] = str(args.output.expanduser().resolve())
        if args.language:
            request["language"] = args.language
        return c.call("ask", **request)["turn"]


def _ask_here(args: argparse.Namespace, paths: list[tuple[Path, str]], speak: bool) -> dict:
    """Answer in this process: no daemon runs (or --here)."""
    from sarai.audio.devices import SpeakerSink
    from sarai.audio.errors import AudioError
    from sarai.daemon.app import build_assistant
    from sarai.daemon.cli.main import load_context
    from sarai.daemon.conversation.core import ConversationCore
    from sarai.daemon.conversation.requests import MediaRef, RequestError, typed
    from sarai.daemon.events import ListenMode
    from sarai.models.attachments import load

    ctx = load_context(args)
    # Read the attachments before any model loads: a file that is not what it seems, or a
    # recording without speech, is refused in one line, at once.
    refs = tuple(MediaRef(p, k, tuple(load(p, expect=k, vad=ctx.config.audio.vad)))
                 for p, k in paths)
    try:
        request = typed(args.text, media=refs, language=args.language, speak=speak,
                        output=args.output)
    except RequestError as exc:
        raise AudioError(str(exc)) from exc
    hear = any(k == "audio" for _, k in paths) or any(k == "video" for _, k in paths)
    assistant = build_assistant(ctx, hear=hear, speak=speak)
    _notice(ctx, assistant)
    listen = ctx.config.listen.model_copy(update={"mode": ListenMode.ALWAYS})
    core = ConversationCore(assistant, listen, lambda ev: None, inline=True,
                            vad=ctx.config.audio.vad)
    speaker = None
    try:
        if speak and args.output is None:
            speaker = SpeakerSink(ctx.config.audio.output_device)
            core.attach_output(speaker)
        fut = core.ask(request)
        _settle(core)
        while not fut.done():
            time.sleep(0.02)
            core.pump()
        try:
            rec = fut.result()
        except RequestError as exc:
            raise AudioError(str(exc)) from exc
    finally:
        core.stop()
        if speaker is not None:
            speaker.close()
        assistant.registry.close()
    return rec.as_dict()
