"""The `sarai` command: one entry point, a subcommand per job.

Starting must be cheap: `sarai status` is a few lines over a socket, and the tray and the
push-to-talk key run commands like it all day. So this module imports only the standard
library, and only the module that defines the command being run is imported (its heavy
imports, numpy, the models, the audio stack, happen inside the command's function).
`--help` at the top level, completion and an unknown command still build the full parser.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sarai.daemon.app import Context

# Which module registers each command, in the order `sarai --help` lists them.
COMMANDS: dict[str, str] = {
    "setup": "setup_cmd",
    "ask": "voice",
    "listen": "voice",
    "run": "run_cmd",
    "status": "daemon_cmds",
    "mute": "daemon_cmds",
    "unmute": "daemon_cmds",
    "mode": "daemon_cmds",
    "push": "daemon_cmds",
    "history": "daemon_cmds",
    "forget": "daemon_cmds",
    "quit": "daemon_cmds",
    "events": "daemon_cmds",
    "tray": "daemon_cmds",
    "service": "daemon_cmds",
    "devices": "devices_cmd",
    "hotkey": "desktop_cmds",
    "logs": "desktop_cmds",
    "completion": "desktop_cmds",
    "models": "models_cmd",
    "route": "route_cmd",
    "bench": "bench_cmd",
    "config": "config_cmd",
}

DESCRIPTION = """\
SARAi is a voice-first assistant that runs entirely on this machine: it listens,
decides which local model should answer, and answers by voice.

first steps:
  sarai setup                                 install the starter models (once)
  sarai ask "how are you?"                    a typed question, spoken answer
  sarai listen --input q.wav --output a.wav   answer the speech in a recording
  sarai run                                   hands-free on the microphone
"""

EPILOG = "Every command has --help with an example. Shell completion: sarai completion --help."


class _Version(argparse.Action):
    """--version, read from the installed package only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ARG002
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("sarai")
        except PackageNotFoundError:
            text = "(not installed)"
        print(f"sarai {text}")
        parser.exit()


def _modules(only: str | None) -> list[ModuleType]:
    if only == "":
        return []
    names = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"sarai.daemon.cli.{n}") for n in names]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's (the rest are not imported; "" for
    none)."""
    from sarai.daemon.cli.examples import add_examples

    parser = argparse.ArgumentParser(
        prog="sarai", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    parser.add_argument(
        "--config", type=Path, metavar="FILE",
        help="configuration file (default: $SARAI_CONFIG or ~/.config/sarai/config.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--debug", action="store_true",
                        help="full tracebacks on errors, and the libraries' own messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules(only):
        module.register(sub)
    add_examples(sub)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (skipping the global options), or None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def load_context(args: argparse.Namespace) -> Context:
    """The validated configuration and the XDG paths every command starts from.

    With --config FILE, `paths.config_file` is that file, so whatever writes settings back
    (`models pull`, the tray) changes the file in use.
    """
    from dataclasses import replace

    from sarai.daemon.app import Context
    from sarai.daemon.config import load_config
    from sarai.daemon.paths import Paths

    paths = Paths.from_env()
    if args.config is not None:
        paths = replace(paths, config_file=args.config)
    config = load_config(paths.config_file, required=args.config is not None)
    return Context(config, paths)


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


_USER_ERRORS = (  # (module, class): one sentence for the user, not a crash
    ("sarai.daemon.config", "ConfigError"),
    ("sarai.audio.errors", "AudioError"),
    ("sarai.models.errors", "ModelError"),
    ("sarai.daemon.control.wire", "ControlError"),
)


def _user_error(exc: Exception) -> bool:
    # Only modules already imported can have raised their errors, so nothing is imported here.
    for module, name in _USER_ERRORS:
        mod = sys.modules.get(module)
        if mod is not None and isinstance(exc, getattr(mod, name)):
            return True
    return False


def _config_error(exc: Exception) -> bool:
    mod = sys.modules.get("sarai.daemon.config")
    return mod is not None and isinstance(exc, mod.ConfigError)


def _pipe_closed() -> int:
    # Whoever read our output (`| head -1`) has gone, as for `git log | head`: stop quietly.
    # Point stdout at /dev/null so the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        return _pipe_closed()


def _completion_parser() -> argparse.ArgumentParser:
    """For a <TAB>: the command being completed only, or, while the command word itself is
    being typed, just the command names (so completing imports nothing heavy)."""
    line = os.environ.get("COMP_LINE", "")[: int(os.environ.get("COMP_POINT", "1000000"))]
    words = line.split()
    typing_word = bool(line) and not line[-1].isspace()
    done = words[1:-1] if typing_word else words[1:]
    command = _command_in(done)
    if command in COMMANDS:
        return build_parser(command)
    parser = build_parser(only="")  # the global options
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in COMMANDS:
        sub.add_parser(name)
    return parser


def _main(argv: list[str]) -> int:
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(_completion_parser())
    command = _command_in(argv)
    # --version alone needs no command's parser (and none of their imports).
    parser = build_parser("" if command is None and "--version" in argv else command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from sarai.daemon.cli.quiet import keep_library_noise_out

    keep_library_noise_out()  # first: sys.stderr is rebound, and logging must write to it
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        ctx = None if getattr(args, "no_context", False) else load_context(args)
        return args.func(args, ctx) or 0
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print("sarai: stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        if _user_error(exc):
            print(f"sarai: error: {exc}", file=sys.stderr)
            return 2 if _config_error(exc) else 1
        if args.debug:
            raise
        print(f"sarai: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 70
