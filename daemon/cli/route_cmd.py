"""`sarai route`: which tier would answer, and why — without answering."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sarai.daemon.app import Context
    from sarai.models.settings import Tier
    from sarai.routing.router import Decision


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "route",
        help="show which tier would answer a turn, and why (nothing is answered)",
        description=(
            "Run the router on typed text or on recordings and print its decision: the tier, "
            "a reason a person can read and the scores behind it. Recordings go through the "
            "VAD, the audio analysis (speech ratio, background level) and speech recognition "
            "first, exactly as a live turn does. No language model is loaded."
        ),
    )
    p.add_argument("--text", "-t", action="append", default=[], metavar="TEXT",
                   help="a typed turn (repeatable)")
    p.add_argument("--audio", "-a", nargs="+", type=Path, default=[], metavar="WAV",
                   help="recordings, one turn each")
    p.add_argument("--attach", action="append", type=Path, default=[], metavar="FILE",
                   help="an image, audio clip or video sent with every turn (repeatable)")
    p.add_argument("--available", metavar="TIERS",
                   help="comma-separated tiers that can serve now (default: assume all can)")
    p.add_argument("--language", metavar="LANG",
                   help="language of the recordings: en, es, … or auto (default: the config's)")
    p.add_argument("--json", action="store_true",
                   help='one JSON line per input: {"input", "tier", "reason", "scores", …}')
    p.set_defaults(func=_route)


def _available(spec: str | None) -> frozenset[Tier] | None:
    from sarai.models.errors import ModelError
    from sarai.models.settings import Tier

    if spec is None:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    bad = [n for n in names if n not in {t.value for t in Tier}]
    if bad:
        raise ModelError(f"unknown tier(s) in --available: {', '.join(bad)} "
                         f"(tiers: {', '.join(t.value for t in Tier)})")
    return frozenset(Tier(n) for n in names)


def _emit(input_: str, d: Decision, as_json: bool, extra: dict) -> None:
    from sarai.routing.router import Action

    if as_json:
        rec = {"input": input_, "tier": d.tier.value, "reason": d.reason, "scores": d.scores,
               "rule": d.rule.value, "action": d.action.value,
               "candidates": [t.value for t in d.candidates],
               "latency_ms": d.latency_ms, **extra}
        print(json.dumps(rec, ensure_ascii=False), flush=True)
        return
    print(input_)
    if "transcript" in extra:
        print(f"  heard:  \"{extra['transcript']}\"")
    if d.action is Action.SKIP:
        print(f"  skip:   {d.reason}")
    else:
        print(f"  tier:   {d.tier} — {d.reason}")
        if len(d.candidates) > 1:
            print(f"  ladder: {' → '.join(t.value for t in d.candidates)}")
    scores = " · ".join(f"{k} {v:g}" for k, v in d.scores.items())
    print(f"  scores: {scores}")
    timing = f"route {d.latency_ms:.2f} ms"
    if "asr_ms" in extra:
        timing = (f"asr {extra['asr_ms']:.0f} ms · analysis {extra['analysis_ms']:.1f} ms · "
                  + timing)
    print(f"  time:   {timing}\n", flush=True)


def _route(args: argparse.Namespace, ctx: Context) -> int:
    from sarai.audio.asr import Transcriber
    from sarai.audio.errors import AudioError
    from sarai.audio.pcm import read_audio
    from sarai.daemon.app import asr_model_dirs
    from sarai.routing.audio_features import analyse, utterance_in
    from sarai.routing.router import Attachment, Router, TurnSignals

    if not args.text and not args.audio:
        raise AudioError("nothing to route: give --text TEXT and/or --audio WAV …")
    attachments = tuple(Attachment.from_path(p) for p in args.attach)
    available = _available(args.available)
    router = Router(ctx.config.routing, cache_dir=ctx.paths.state_dir / "router")
    for text in args.text:
        d = router.decide(TurnSignals(text, attachments=attachments, available=available))
        _emit(text, d, args.json, {})
    if not args.audio:
        return 0
    transcriber = Transcriber(ctx.config.audio.asr, asr_model_dirs(ctx))
    failed = 0
    for path in args.audio:
        try:
            pcm = read_audio(path)
            samples = utterance_in(pcm.samples, ctx.config.audio.vad)
            if samples is None:
                raise AudioError(f"no speech found in {path}")
            t = time.perf_counter()
            features = analyse(samples, aggressiveness=ctx.config.routing.audio.vad_aggressiveness)
            analysis_ms = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            heard = transcriber.transcribe(samples, args.language)
            asr_ms = (time.perf_counter() - t) * 1000
        except AudioError as exc:
            # One bad recording should not hide the decisions for the others.
            print(f"sarai: error: {exc}", file=sys.stderr, flush=True)
            failed += 1
            continue
        d = router.decide(TurnSignals(heard.text, audio=features, attachments=attachments,
                                      available=available))
        _emit(str(path), d, args.json, {"transcript": heard.text, "language": heard.language,
                                        "asr_ms": round(asr_ms, 1),
                                        "analysis_ms": round(analysis_ms, 2)})
    return 1 if failed else 0
