"""`sarai config show|validate`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sarai.daemon.config import ConfigError, dump_config, line_of, load_config

if TYPE_CHECKING:
    from sarai.daemon.app import Context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show or check the configuration",
                       description="Show the effective configuration or check a file.")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = csub.add_parser(
        "show", help="print the effective configuration (defaults + your file)",
        description="Print the configuration SARAi runs with: the shipped defaults with your "
        "file's values over them, as YAML you can copy into your file.")
    show.set_defaults(func=_show)
    val = csub.add_parser(
        "validate", help="check a configuration file without starting anything",
        description="Check a configuration file: YAML syntax, every key and value, the "
        "microphone and speaker names (against the devices present now) and the "
        "push-to-talk key. Problems are named with file, line and key; nothing is started.")
    val.add_argument("file", type=Path)
    val.set_defaults(func=_validate, no_context=True)


def _show(args: argparse.Namespace, ctx: Context) -> int:
    print(f"# effective configuration (file: {args.config or ctx.paths.config_file})")
    print(dump_config(ctx.config), end="")
    return 0


def _validate(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    from sarai.daemon.cli.device_check import check_devices

    config = load_config(args.file, required=True)
    check_devices(config.audio, args.file)
    if config.listen.hotkey is not None:
        from sarai.daemon.desktop.keys import HotkeyError, parse_hotkey

        try:
            parse_hotkey(config.listen.hotkey)
        except HotkeyError as exc:
            raise ConfigError(f"{line_of(args.file, 'listen', 'hotkey')}: listen.hotkey: "
                              f"{exc}") from exc
    print(f"{args.file}: ok")
    return 0
