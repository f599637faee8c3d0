"""`sarai models ps|load|unload|pin` against the running daemon, when there is one.

Models loaded in the daemon are what matters to a user; a separate `sarai models` process
would only see (and load) its own. So these commands ask the daemon first and act in their
own process only when none runs.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sarai.daemon.cli.daemon_cmds import client
from sarai.daemon.control.client import ControlClient
from sarai.daemon.control.wire import DaemonNotRunning
from sarai.models.resident import ResidentInfo

LOAD_TIMEOUT_S = 600.0  # a large model from a cold disk


def running() -> ControlClient | None:
    """A connection to this user's daemon, or None when none runs."""
    try:
        return client(LOAD_TIMEOUT_S)
    except DaemonNotRunning:
        return None


def _infos(reply: dict[str, Any]) -> list[ResidentInfo]:
    return [ResidentInfo(**r) for r in reply.get("resident", [])]


def _payload(reply: dict[str, Any], pid: int | None = None) -> dict[str, Any]:
    ram = reply.get("ram") or {}
    return {"resident": reply.get("resident", []), "budget_mb": ram.get("budget_mb"),
            "used_mb": ram.get("used_mb"), "process": {"total_mb": ram.get("process_mb")},
            "tiers": reply.get("models", []), "daemon_pid": pid}


def _table(reply: dict[str, Any]) -> str:
    from sarai.daemon.cli.models_cmd import ps_table

    return ps_table(_infos(reply), (reply.get("ram") or {}).get("budget_mb") or 0.0)


def ps(args: argparse.Namespace, c: ControlClient) -> int:
    with c:
        pid = c.call("status")["pid"]
        reply = c.call("models", action="ps")
    if args.json:
        print(json.dumps(_payload(reply, pid), indent=2))
    else:
        print(_table(reply))
        print(f"(Resident in the running SARAi, pid {pid}.)")
    return 0


def load(args: argparse.Namespace, c: ControlClient) -> int:
    with c:
        t = time.perf_counter()
        reply = c.call("models", action="load", tier=args.tier, long_context=args.long)
        took = time.perf_counter() - t
    if args.json:
        print(json.dumps({"load_s": round(took, 3), **_payload(reply)}, indent=2))
    else:
        print(f"Loaded {args.tier} in the running SARAi in {took:.2f} s.")
        print(_table(reply))
    return 0


def unload(args: argparse.Namespace, c: ControlClient) -> int:
    with c:
        c.call("models", action="unload", tier=args.tier, force=args.force)
    print(f"{args.tier} is not resident in the running SARAi.")
    return 0


def pin(args: argparse.Namespace, c: ControlClient) -> int:
    with c:
        reply = c.call("models", action="unpin" if args.off else "pin", tier=args.tier)
    view = next(m for m in reply["models"] if m["tier"] == args.tier)
    state = "pinned" if view["pinned"] else "unpinned"
    print(f"{view['model']} ({args.tier}) is {state} in the running SARAi.")
    return 0
