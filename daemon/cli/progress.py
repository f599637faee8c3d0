"""Byte progress for downloads: a bar with rate and ETA on a terminal, plain lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

MIB = 1024 * 1024
_PLAIN_EVERY_S = 5.0


def size(n: float) -> str:
    return f"{n / MIB / 1024:.2f} GB" if n >= 1024 * MIB else f"{n / MIB:.1f} MB"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


class ByteBar:
    """One download's progress. On a terminal the line redraws in place; elsewhere (a log,
    a pipe) a plain line is printed every few seconds and at the end."""

    def __init__(self, label: str, stream: TextIO | None = None, *,
                 tty: bool | None = None, clock=time.monotonic) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._clock = clock
        self._start = clock()
        self._first: int | None = None  # bytes already there when we started (a resume)
        self._last_plain = -1e9
        self._drawn = False

    def line(self, done: int, total: int | None, rate: float | None = None) -> str:
        """The text for `done` of `total` bytes at `rate` bytes/s (measured if None)."""
        if self._first is None:
            self._first = done
        elapsed = max(self._clock() - self._start, 1e-6)
        if rate is None:
            rate = (done - self._first) / elapsed
        parts = [f"  {self.label}"]
        if total:
            frac = min(1.0, done / total)
            if self.tty:
                width = max(10, min(30, shutil.get_terminal_size((80, 20)).columns - 60))
                filled = int(frac * width)
                parts.append(f"[{'#' * filled}{'.' * (width - filled)}]")
            parts.append(f"{100 * frac:3.0f}%  {size(done)} of {size(total)}")
        else:
            parts.append(size(done))
        if rate > 0:
            parts.append(f"{rate / MIB:.1f} MB/s")
            if total and done < total:
                parts.append(f"ETA {duration((total - done) / rate)}")
        return "  ".join(parts)

    def update(self, done: int, total: int | None, rate: float | None = None) -> None:
        text = self.line(done, total, rate)
        finished = total is not None and done >= total
        if self.tty:
            self.stream.write("\r" + text + "\033[K")
            self.stream.flush()
            self._drawn = True
            return
        now = self._clock()
        if finished or now - self._last_plain >= _PLAIN_EVERY_S:
            self._last_plain = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """End the redrawn line (on a terminal) so the next output starts on its own line."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
