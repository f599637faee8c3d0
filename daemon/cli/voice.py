"""`sarai listen`, `sarai ask` and `sarai run`: the voice turn from a file, text or the mic."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from sarai.audio.devices import SpeakerSink, WavSink
from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.vad import UtteranceSegmenter, second_opinion
from sarai.daemon.app import Context, build_assistant
from sarai.daemon.cli import ask_media
from sarai.daemon.cli.report import format_turn
from sarai.daemon.conversation.turn import Assistant, TurnRecord

log = logging.getLogger(__name__)

# Files are fed to the VAD in microphone-sized blocks so each turn starts as soon as its
# utterance ends, exactly as it would live.
_BLOCK = SAMPLE_RATE * 30 // 1000


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
        description="Answer a typed question with the tier the router picks.",
    )
    p.add_argument("text", nargs="?", default="", help="the question (optional with media)")
    ask_media.add_options(p)
    p.add_argument("--no-speak", action="store_true", help="print the answer only")
    p.add_argument("--output", "-o", type=Path, metavar="WAV",
                   help="write the spoken answer here instead of playing it")
    p.add_argument("--json", action="store_true", help="print the turn record as JSON")
    p.set_defaults(func=_ask)



def _emit(rec: TurnRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rec.as_dict(), ensure_ascii=False), flush=True)
    else:
        print(format_turn(rec) + "\n", flush=True)


def _notice(assistant: Assistant) -> None:
    note = assistant.registry.starter_notice()
    if note:
        print(f"sarai: {note}", file=sys.stderr, flush=True)


def _listen(args: argparse.Namespace, ctx: Context) -> int:
    pcm = read_audio(args.input)
    assistant = build_assistant(ctx, hear=True, speak=True)
    _notice(assistant)
    assistant.registry.preload_pinned()
    sink = WavSink(args.output) if args.output else SpeakerSink(ctx.config.audio.output_device)
    vad = ctx.config.audio.vad
    seg = UtteranceSegmenter(vad, second_opinion=second_opinion(vad))
    tail = np.zeros(SAMPLE_RATE * ctx.config.audio.vad.end_silence_ms // 1000 + _BLOCK, np.int16)
    samples = np.concatenate([pcm.samples, tail])
    turns = 0
    try:
        for i in range(0, len(samples), _BLOCK):
            for utt in seg.push(samples[i : i + _BLOCK]):
                if turns and isinstance(sink, WavSink):
                    sink.gap(0.5)
                rec = assistant.voice_turn(utt, sink)
                turns += 1
                _emit(rec, args.json)
        for utt in seg.flush():
            rec = assistant.voice_turn(utt, sink)
            turns += 1
            _emit(rec, args.json)
        if turns == 0:
            raise AudioError(f"no speech found in {args.input}")
        sink.drain()
    finally:
        if turns:
            sink.close()
        assistant.registry.close()
    if args.output and not args.json:
        print(f"answers written to {args.output}")
    return 0


def _ask(args: argparse.Namespace, ctx: Context) -> int:
    media = ask_media.load_media(args)
    if not args.text.strip() and not media:
        raise AudioError("nothing to ask: the question is empty")
    speak = not args.no_speak
    assistant = build_assistant(ctx, hear=ask_media.needs_ear(media), speak=speak)
    _notice(assistant)
    sink = None
    if speak:
        sink = WavSink(args.output) if args.output else SpeakerSink(ctx.config.audio.output_device)
    try:
        rec = assistant.text_turn(args.text.strip(), sink, media=media)
        if sink is not None:
            sink.close()
    finally:
        assistant.registry.close()
    if args.json:
        _emit(rec, True)
    else:
        print(rec.reply if args.no_speak else format_turn(rec))
    return 1 if rec.error else 0

