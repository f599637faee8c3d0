"""`sarai bench models`: tokens/s per tier through SARAi and through bare llama-cpp-python.

Registered by `daemon/cli/bench_cmd.py` (listed in its `_BENCHES`).
"""

from __future__ import annotations

import argparse
import json
import sys

from sarai.daemon.app import Context
from sarai.daemon.cli.models_cmd import build_registry
from sarai.models.bench import bench_models, save
from sarai.models.settings import Tier


def register(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "models", help="load time, first token, tokens/s and RSS per tier, vs bare llama.cpp",
        description="For each tier: load time, time to first token, prompt and decode "
        "tokens/s and peak RSS through SARAi; then the same file, context and threads through "
        "bare llama-cpp-python, the ratio of the two, and decode efficiency against the "
        "measured memory bandwidth. The seeds' KPIs are checked for production models.",
    )
    p.add_argument("--tier", action="append", choices=[t.value for t in Tier],
                   help="only this tier (repeatable); default: all four")
    p.add_argument("--max-tokens", type=int, default=64, help="reply length (default 64)")
    p.add_argument("--runs", type=int, default=1, help="repeat and report medians (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace, ctx: Context) -> int:
    tiers = [Tier(t) for t in args.tier] if args.tier else list(Tier)
    if args.max_tokens < 2 or args.runs < 1:
        print("sarai: error: --max-tokens must be at least 2 and --runs at least 1",
              file=sys.stderr)
        return 2
    reg = build_registry(ctx)
    quiet = args.json

    def report(line: str) -> None:
        if not quiet:
            print(f"  measuring {line}", flush=True)

    try:
        result = bench_models(reg, tiers, max_tokens=args.max_tokens, runs=args.runs,
                              report=report)
    finally:
        reg.close()
    path = save(result, ctx.paths.bench_dir)
    result["saved"] = str(path)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\nCopy bandwidth {result['copy_bandwidth_gbs']} GB/s, {result['cpus']} CPUs, "
          f"{args.max_tokens} tokens per reply.")
    print(f"{'TIER':13} {'MODEL':34} {'LOAD':>6} {'TTFT':>8} {'TOK/S':>7} {'BARE':>7} "
          f"{'RATIO':>6} {'RSS':>7} {'BW EFF':>7}  KPI")
    for r in result["tiers"]:
        if r.get("error"):
            print(f"{r['tier']:13} {r['model'][:34]:34} error: {r['error']}")
            continue
        kpi = ("-" if r["kpi_ok"] is None
               else f"{'ok' if r['kpi_ok'] else 'FAIL'} (>= {r['kpi_min_tok_s']:g})")
        print(f"{r['tier']:13} {r['model'][:34]:34} {_f(r['load_s'], 's')} "
              f"{_f(r['ttft_ms'], 'ms', 8)} {_f(r['decode_tok_s'])} "
              f"{_f(r['bare_decode_tok_s'])} {_f(r['ratio'], '', 6)} "
              f"{_f(r['rss_mb'], 'M')} {_f(r['bandwidth_efficiency'])}  {kpi}")
    if any(r.get("starter") for r in result["tiers"]):
        print("KPIs apply to production models only; starter stand-ins are not checked.")
    print(f"Saved {path}")
    return 0


def _f(x: float | None, unit: str = "", width: int = 7) -> str:
    if x is None:
        return "-".rjust(width)
    text = f"{x:.0f}{unit}" if abs(x) >= 100 else f"{x:.2f}{unit}"
    return text.rjust(width)
