"""`sarai config show|validate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sarai.daemon.app import Context
from sarai.daemon.config import dump_config, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show or check the configuration",
                       description="Show the effective configuration or check a file.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser("show", help="print the effective configuration (defaults + your file)")
    show.set_defaults(func=_show)
    val = csub.add_parser("validate", help="check a configuration file without starting anything")
    val.add_argument("file", type=Path)
    val.set_defaults(func=_validate, no_context=True)


def _show(args: argparse.Namespace, ctx: Context) -> int:
    print(f"# effective configuration (file: {args.config or ctx.paths.config_file})")
    print(dump_config(ctx.config), end="")
    return 0


def _validate(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    load_config(args.file, required=True)
    print(f"{args.file}: ok")
    return 0
