"""The `sarai` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from sarai.audio.errors import AudioError
from sarai.daemon.app import Context
from sarai.daemon.cli import (
    bench_cmd,
    config_cmd,
    daemon_cmds,
    models_cmd,
    route_cmd,
    run_cmd,
    setup_cmd,
    voice,
)
from sarai.daemon.config import ConfigError, load_config
from sarai.daemon.control.wire import ControlError
from sarai.daemon.paths import Paths
from sarai.models.errors import ModelError

_COMMANDS = (setup_cmd, voice, run_cmd, daemon_cmds, models_cmd, route_cmd, bench_cmd,
             config_cmd)

DESCRIPTION = """\
SARAi is a voice-first assistant that runs entirely on this machine: it listens,
decides which local model should answer, and answers by voice.

first steps:
  sarai setup                                 install the starter models (once)
  sarai ask "how are you?"                    a typed question, spoken answer
  sarai listen --input q.wav --output a.wav   answer the speech in a recording
  sarai run                                   hands-free on the microphone
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sarai", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE",
        help="configuration file (default: $SARAI_CONFIG or ~/.config/sarai/config.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub)
    return parser


def load_context(args: argparse.Namespace) -> Context:
    paths = Paths.from_env()
    path = args.config or paths.config_file
    config = load_config(path, required=args.config is not None)
    return Context(config, paths)


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        ctx = None if getattr(args, "no_context", False) else load_context(args)
        return args.func(args, ctx) or 0
    except (ConfigError, AudioError, ModelError, ControlError) as exc:
        print(f"sarai: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        print("sarai: stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"sarai: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 70

