"""`sarai bench …`: measured performance, printed and saved as JSON.

Each benchmark lives in its own module `daemon/cli/bench_<name>.py` exposing
`register(bench_sub)`, which adds its parser to the `bench` sub-commands; list it in
`_BENCHES` below. Results are saved under the XDG state folder (`bench/<name>-<ts>.json`).
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

_BENCHES = ("bench_voice", "bench_models", "bench_router", "bench_soak", "bench_turn",
            "bench_room")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure performance (results printed and saved as JSON)",
        description="Benchmarks. Each prints its figures, saves them as JSON under the XDG "
        "state folder (~/.local/state/sarai/bench/) and with --json prints one JSON object.",
    )
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for name in _BENCHES:
        importlib.import_module(f"sarai.daemon.cli.{name}").register(bsub)


def save_result(bench_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """Write `result` as bench/<name>-<timestamp>.json (owner only: it holds what was heard)
    and return the path."""
    from sarai.daemon.paths import private_dir, write_private

    private_dir(bench_dir.parent)  # the state folder
    path = bench_dir / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    write_private(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path


def report(bench_dir: Path, name: str, result: dict[str, Any], as_json: bool,
           show: Callable[[dict[str, Any], Path], None]) -> int:
    """Save `result` (save_result), then print it as one JSON object or as `show` writes it
    for a person; the command's exit status."""
    path = save_result(bench_dir, name, result)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        show(result, path)
    return 0


def percentiles(values: list[float], *qs: int) -> dict[str, float | None]:
    """{"p50": …, "p90": …} of `values` (None when there are none)."""
    import numpy as np

    if not values:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in qs}
