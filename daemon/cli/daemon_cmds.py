"""Commands that talk to the running daemon, plus `sarai tray` and `sarai service`.

status, mute, unmute, mode, push, history, forget, quit and events go over the control
socket; when no daemon runs they say so in one sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from sarai.daemon.control.client import ControlClient
from sarai.daemon.control.wire import ControlError, DaemonNotRunning, socket_path
from sarai.daemon.events import ListenMode
from sarai.daemon.paths import Paths


def client(timeout: float = 30.0) -> ControlClient:
    """A connection to this user's daemon; DaemonNotRunning (a ControlError) if none runs."""
    return ControlClient(socket_path(Paths.from_env().runtime_dir), timeout)


def register(sub: argparse._SubParsersAction) -> None:
    def add(name: str, help_: str, func, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                           **kw)
        p.set_defaults(func=func, no_context=True)
        return p

    p = add("status", "show what the running SARAi is doing and which models are resident",
            _status)
    p.add_argument("--json", action="store_true", help="print the full status as JSON")
    add("mute", "stop listening (the microphone is ignored until 'sarai unmute')", _simple)
    add("unmute", "listen again, in the mode used before muting", _simple)
    p = add("mode", "show or set the listening mode", _mode)
    p.add_argument("mode", nargs="?", choices=[m.value for m in ListenMode],
                   help="always: every utterance; wake: after a wake phrase; push: "
                        "push-to-talk; muted: not listening (none: print the mode)")
    p = add("push", "push-to-talk (in push mode): start or stop talking", _push)
    p.add_argument("action", choices=["start", "stop"])
    p = add("history", "show the last turns the running SARAi answered", _history)
    p.add_argument("-n", type=int, default=10, metavar="N", help="how many (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON turn record per line")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="draw each turn's stages as a waterfall into this image (from the "
                        "running SARAi, or the turn log when it is not running)")
    p = add("forget", "forget the conversation so far", _forget)
    p.add_argument("--log", action="store_true", help="also delete the turn log on disk")
    p = add("quit", "stop the running SARAi (models are unloaded, devices closed)", _quit)
    p.add_argument("--no-wait", action="store_true", help="do not wait until it has stopped")
    add("events", "print the live event stream (state, mode, residency, turns) as JSON lines",
        _events)

    p = add("tray", "show SARAi in the system tray (state, resident models, controls)", _tray)
    p.add_argument("--backend", choices=["auto", "appindicator", "gtk", "xorg"], default="auto",
                   help="tray backend (default: the best this desktop offers)")

    p = add("service", "install or remove the systemd user service and the tray autostart",
            _service)
    p.add_argument("action", choices=["install", "uninstall", "status"])
    p.add_argument("--now", action="store_true", help="install: also enable and start it")


def _status(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    with client() as c:
        st = c.call("status")
    if args.json:
        st.pop("ok", None)
        print(json.dumps(st, ensure_ascii=False, indent=2))
        return 0
    print(format_status(st))
    return 0


def format_status(st: dict[str, Any]) -> str:
    up = _duration(st.get("uptime_s", 0))
    lines = [f"state:      {st['state']}" + (f" ({st['message']})" if st.get("message") else ""),
             f"mode:       {st['mode']}",
             f"daemon:     pid {st['pid']}, up {up}, {st['turns']} turn(s) answered",
             f"voice loop: {st['voice_loop']}"]
    if st.get("last_error"):
        lines.append(f"last error: {st['last_error']} ({st['restarts']} restart(s))")
    if st.get("microphone_lost"):
        lines.append(f"microphone: lost {st['microphone_lost']} time(s) since the voice loop "
                     "started, and reopened")
    lines.append(format_models(st))
    if st.get("log_file"):
        lines.append(f"log:        {st['log_file']}")
    return "\n".join(lines)


def format_models(data: dict[str, Any]) -> str:
    ram = data.get("ram") or {}
    head = (f"models: {ram.get('used_mb', 0) / 1024:.2f} GB of the "
            f"{ram.get('budget_mb', 0) / 1024:.1f} GB RAM budget in use "
            f"(the daemon holds {ram.get('process_mb', 0) / 1024:.2f} GB in all)")
    rows = []
    for m in data.get("models", []):
        model = m["model"] + (" (starter)" if m.get("starter") else "")
        flags = ("resident" if m["resident"] else "-") + (", pinned" if m["pinned"] else "")
        size = f"{m['size_mb']:.0f} MB" if m.get("size_mb") else ""
        rows.append(f"  {m['tier']:<13} {flags:<17} {size:>7}  {m['backend']:<9} {model}")
    return "\n".join([head, *rows])


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _simple(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    with client() as c:
        reply = c.call(args.command)
    print(f"mode: {reply['mode']}")
    return 0


def _mode(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    with client() as c:
        reply = c.call("status") if args.mode is None else c.call("mode", mode=args.mode)
    print(f"mode: {reply['mode']}")
    return 0


def _push(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    with client() as c:
        reply = c.call("push", action=args.action)
    print("talking…" if reply["pushing"] else "released")
    return 0


def _history(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    if args.plot is not None:
        return _plot_history(args)
    with client() as c:
        turns = c.call("history", limit=max(1, args.n))["turns"]
    from sarai.daemon.cli.report import format_turn
    from sarai.daemon.conversation.record import TurnRecord

    for t in turns:
        print(json.dumps(t, ensure_ascii=False) if args.json
              else format_turn(TurnRecord.from_dict(t)) + "\n")
    if not turns and not args.json:
        print("no turns yet")
    return 0


def _plot_history(args: argparse.Namespace) -> int:
    import sys

    from sarai.daemon.cli.plot import output_problem, plot_turns, read_turn_log, with_stages

    problem = output_problem(args.plot)
    if problem:
        print(f"sarai: error: {problem}", file=sys.stderr)
        return 1
    try:
        with client(10) as c:
            turns = c.call("history", limit=max(1, args.n))["turns"]
        origin = "the running SARAi"
    except DaemonNotRunning:
        log_file = Paths.from_env().state_dir / "turns.jsonl"
        turns = read_turn_log(log_file, args.n)
        origin = str(log_file)
    kept, skipped = with_stages(turns)
    if skipped:
        print(f"note: {skipped} turn(s) recorded without stage timings (by an older SARAi) "
              "left out", file=sys.stderr)
    if not kept:
        print(f"sarai: error: no turn with stage timings to plot in {origin}", file=sys.stderr)
        return 1
    path = plot_turns(kept, args.plot)
    print(f"{path}: the stages of {len(kept)} turn(s) from {origin}")
    return 0


def _forget(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    with client() as c:
        reply = c.call("forget", log=args.log)
    print("forgotten" + (" (turn log deleted)" if reply.get("log_deleted") else ""))
    return 0


def _quit(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    with client() as c:
        pid = c.call("quit")["pid"]
    if args.no_wait:
        print("SARAi is stopping")
        return 0
    sock = socket_path(Paths.from_env().runtime_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # A daemon started from this shell and not yet reaped stays a zombie: it has exited.
        # Where its state cannot be read (another PID namespace), its socket going quiet
        # tells the same.
        gone = _process_gone(pid)
        if gone or (gone is None and not _socket_answers(sock)):
            print("SARAi stopped")
            return 0
        time.sleep(0.1)
    print(f"SARAi (pid {pid}) is still stopping")
    return 1


def _process_gone(pid: int) -> bool | None:
    """Whether `pid` has exited (no such process, or only its exit status is left: a
    zombie); None when that cannot be told."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return None
        return None
    state = stat.rpartition(")")[2].split()[:1]  # the name in (…) may hold spaces
    return state in (["Z"], ["X"], ["x"])


def _socket_answers(path: Path) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _events(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    with client() as c:
        for ev in c.subscribe():
            print(json.dumps(ev, ensure_ascii=False), flush=True)
    return 0


def _tray(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    from sarai.daemon.tray.app import run_tray

    return run_tray(Paths.from_env(), backend=args.backend, config=args.config)


def _service(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    from sarai.daemon.service import unit as service

    paths = service.ServicePaths.from_env()
    if args.action == "install":
        config: Path | None = args.config
        for line in service.install(paths, config=config, now=args.now):
            print(line)
    elif args.action == "uninstall":
        for line in service.uninstall(paths):
            print(line)
    else:
        info = service.status(paths)
        for key, value in info.items():
            print(f"{key}: {'(systemd user manager not reachable)' if value is None else value}")
        try:
            with client(5) as c:
                st = c.call("status")
            print(f"daemon: {st['state']} (pid {st['pid']})")
        except ControlError:
            print("daemon: not running")
    return 0
