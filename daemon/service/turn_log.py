"""The turn log: one JSON object per answered turn, appended under the XDG state directory.

Only the text record is written (transcript, reply, tier, timings); audio never is.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sarai.daemon.paths import open_private, private_dir

log = logging.getLogger(__name__)


class TurnLog:
    """Appends turn records to a JSON-lines file readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                private_dir(self.path.parent)
                fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
                with os.fdopen(fd, "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as exc:  # a full disk must not stop the assistant
                log.error("cannot write the turn log %s: %s", self.path, exc)

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last `limit` records (all if None); unreadable lines are skipped."""
        with self._lock:
            try:
                lines = self.path.read_text("utf-8").splitlines()
            except FileNotFoundError:
                return []
        out = []
        for line in lines[-limit:] if limit else lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def clear(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)
