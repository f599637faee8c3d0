"""What both ends of the control socket share without importing the request models: where
the socket lives, how a line is encoded, and the errors a client reports.

Kept to the standard library so that `sarai status` and friends start quickly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SOCKET_NAME = "control.sock"


class ControlError(Exception):
    """The control API could not be used; str() is one sentence for the user."""


class DaemonNotRunning(ControlError):
    """No daemon answers on the control socket."""


def socket_path(runtime_dir: Path) -> Path:
    return runtime_dir / SOCKET_NAME


def encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
