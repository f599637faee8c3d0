"""`sarai hotkey`, `sarai logs` and `sarai completion`: SARAi in the desktop session."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sarai.daemon.app import Context

SHELLS = ("bash", "zsh", "fish")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hotkey", help="listen for the global push-to-talk key (listen.hotkey)",
        description="Grab the global push-to-talk key in this desktop session and drive the "
        "running SARAi with it (push start / push stop over its control socket; SARAi must "
        "be in push mode). Held, SARAi listens while it is down; tapped, until it is tapped "
        "again. Uses the XDG GlobalShortcuts portal where the desktop offers it, else an X11 "
        "key grab. The tray does the same when listen.hotkey is set, so this is for "
        "sessions without it.",
    )
    p.add_argument("--key", metavar="KEYS", help="the key, e.g. '<ctrl>+<alt>+space' "
                   "(default: listen.hotkey)")
    p.add_argument("--backend", choices=["auto", "portal", "x11"], default="auto",
                   help="how to grab it (default: the portal if there is one, else X11)")
    p.set_defaults(func=_hotkey)

    p = sub.add_parser(
        "logs", help="show the daemon's log (the journal under systemd, else its log file)",
        description="Show the running SARAi's log: from the systemd journal when it runs "
        "as the user service, else from ~/.local/state/sarai/daemon.log.",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=50, metavar="N",
                   help="how many of the last lines (default 50)")
    p.set_defaults(func=_logs, no_context=True)

    p = sub.add_parser(
        "completion", help="print the shell completion script for bash, zsh or fish",
        description="Print a completion script for your shell. Save it where your shell "
        "looks for completions (see the examples), then open a new shell.",
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=_completion, no_context=True)


# --- hotkey -----------------------------------------------------------------------------

def _hotkey(args: argparse.Namespace, ctx: Context) -> int:
    from sarai.daemon.desktop.hotkey import HotkeyUnavailable, run_hotkey

    text = args.key or ctx.config.listen.hotkey
    if not text:
        print("sarai: no push-to-talk key is configured (set listen.hotkey, or give --key)",
              file=sys.stderr)
        return 1
    try:
        return run_hotkey(text, ctx.paths, backend=args.backend)
    except HotkeyUnavailable as exc:
        print(f"sarai: error: {exc}", file=sys.stderr)
        return 1


# --- logs -------------------------------------------------------------------------------

def _under_systemd() -> bool:
    """Whether SARAi runs as the user service (then its log is in the journal)."""
    from sarai.daemon.service.unit import UNIT_NAME, systemctl

    ok, out = systemctl("is-active", UNIT_NAME)
    return ok and out.strip() == "active"


def _logs(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    from sarai.daemon.paths import Paths
    from sarai.daemon.service.unit import UNIT_NAME

    if shutil.which("journalctl") and _under_systemd():
        cmd = ["journalctl", "--user", "-u", UNIT_NAME, "-n", str(args.lines), "--no-pager"]
        if args.follow:
            cmd.append("-f")
        return _run_pager(cmd)
    log_file = Paths.from_env().state_dir / "daemon.log"
    if not log_file.is_file():
        print(f"sarai: no log yet: {log_file} does not exist (SARAi writes it while it runs, "
              "unless daemon.log_file is false)", file=sys.stderr)
        return 1
    print(f"==> {log_file} <==", file=sys.stderr, flush=True)
    if args.follow:
        return _run_pager(["tail", "-n", str(args.lines), "-F", str(log_file)])
    _print_tail(log_file, args.lines)
    return 0


def _print_tail(path: Path, lines: int) -> None:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max(1, lines) * 400))
        text = f.read().decode("utf-8", "replace").splitlines()
    for line in text[-max(1, lines):]:
        print(line)


def _run_pager(cmd: list[str]) -> int:
    try:
        return subprocess.run(cmd).returncode
    except KeyboardInterrupt:
        return 0


# --- completion -------------------------------------------------------------------------

def _completion(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    import argcomplete

    # argcomplete runs `sarai` itself to complete a word; main() answers it from the full
    # parser when _ARGCOMPLETE is set.
    print(argcomplete.shellcode(["sarai"], shell=args.shell), end="")
    return 0
