"""`sarai bench router`: how often the router picks the right tier, and how fast it decides.

Accuracy and the confusion matrix are measured on the labelled evaluation set (kept apart
from the training set, which is reported too): typed, and spoken with espeak-ng in English
and Spanish — including turns spoken over generated music or noise — through the real VAD,
audio analysis and Whisper. Decision latency excludes speech recognition.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from sarai.audio.asr import Transcriber
from sarai.daemon.app import Context, asr_model_dirs
from sarai.daemon.cli.bench_cmd import save_result
from sarai.routing import dataset, evaluate
from sarai.routing.dataset import Split
from sarai.routing.router import Router

GOALS = {"accuracy": 0.90, "latency_p99_ms": 10.0}


def register(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser(
        "router",
        help="routing accuracy (typed and spoken, en/es) and decision latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--text-only", action="store_true",
                   help="skip the spoken evaluation (no speech synthesis or recognition)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="speak only N evaluation turns per language (spread over the set)")
    p.set_defaults(func=_bench)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace, ctx: Context) -> int:
    cfg = ctx.config
    t0 = time.perf_counter()
    router = Router(cfg.routing, cache_dir=ctx.paths.state_dir / "router")
    load_ms = (time.perf_counter() - t0) * 1000
    train_rows, eval_rows = dataset.load(Split.TRAIN), dataset.load(Split.EVAL)
    train = evaluate.run_text(router, train_rows)
    typed = evaluate.run_text(router, eval_rows)
    result: dict = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "router_load_ms": round(load_ms, 1),
        "train": evaluate.summary(train),
        "eval": {"typed": evaluate.summary(typed)},
    }
    spoken: list[evaluate.Outcome] = []
    if not args.text_only:
        transcriber = Transcriber(cfg.audio.asr, asr_model_dirs(ctx))
        rows = evaluate.pick(eval_rows, args.limit)

        def transcribe(samples, lang: str) -> str:
            return transcriber.transcribe(samples, lang).text

        spoken = evaluate.run_spoken(router, rows, transcribe, cfg.audio.vad,
                                     progress=None if args.json else _log)
        result["eval"]["spoken"] = evaluate.summary(spoken)
    headline = spoken or typed
    decide_ms = [o.decide_ms for o in (*train, *typed, *spoken)]
    result |= {
        "accuracy": evaluate.accuracy(headline),
        "confusion": evaluate.confusion(headline),
        "latency_ms": evaluate.percentiles(decide_ms),
        "measured_on": "eval, spoken" if spoken else "eval, typed",
        "goals": GOALS,
        "misses": evaluate.misses(headline),
    }
    result["goals_met"] = {
        "accuracy": (result["accuracy"] or 0) >= GOALS["accuracy"],
        "latency_p99_ms": (result["latency_ms"]["p99"] or 0) <= GOALS["latency_p99_ms"],
    }
    path = save_result(ctx.paths.bench_dir, "router", result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    else:
        _print(result)
        print(f"saved to {path}")
    return 0


def _print(r: dict) -> None:
    def line(name: str, s: dict) -> str:
        langs = ", ".join(f"{k} {v:.0%}" for k, v in s["by_lang"].items())
        return f"{name:14} {s['accuracy']:.1%} of {s['n']} ({langs})"

    print("Router accuracy")
    print("  " + line("train, typed", r["train"]))
    print("  " + line("eval, typed", r["eval"]["typed"]))
    if "spoken" in r["eval"]:
        sp = r["eval"]["spoken"]
        print("  " + line("eval, spoken", sp))
        if "audio_heavy_accuracy" in sp:
            print(f"  {'':14} over music/noise: {sp['audio_heavy_accuracy']:.0%}")
    print(f"\nConfusion ({r['measured_on']}; rows expected, columns predicted)")
    cols = sorted({c for row in r["confusion"].values() for c in row})
    print("  " + " " * 14 + "".join(f"{c:>14}" for c in cols))
    for exp, row in r["confusion"].items():
        print(f"  {exp:14}" + "".join(f"{row.get(c, 0):>14}" for c in cols))
    lat = r["latency_ms"]
    print(f"\nDecision latency: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
          f"(goal ≤ {GOALS['latency_p99_ms']:g} ms, excluding speech recognition)")
    if "spoken" in r["eval"]:
        asr = r["eval"]["spoken"]["asr_ms"]
        print(f"Speech recognition (not counted): p50 {asr['p50']:.0f} ms")
    met = r["goals_met"]
    print(f"Goals: accuracy ≥ {GOALS['accuracy']:.0%} {'met' if met['accuracy'] else 'NOT met'}, "
          f"p99 {'met' if met['latency_p99_ms'] else 'NOT met'}")
    if r["misses"]:
        print("\nMisses:")
        for m in r["misses"]:
            heard = f" (heard {m['transcript']!r})" if m["transcript"] is not None else ""
            print(f"  [{m['lang']}] {m['text']!r}{heard}: expected {m['expected']}, "
                  f"got {m['predicted']} — {m['reason']}")
