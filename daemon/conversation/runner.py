"""Where turns are worked on: one at a time, so no model ever serves two generations at once.

Turns heard on the microphone go first (the user is there, waiting), then other turns (typed,
from the socket), then background jobs (reading the next prompt into the model's cache),
which the core cancels as soon as a turn comes. `Runner` works on a thread
of its own; `InlineRunner` works when asked (`run_pending`), which is what makes the
device-free harness deterministic.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from enum import IntEnum

log = logging.getLogger(__name__)

Job = Callable[[], None]


class Priority(IntEnum):
    VOICE = 0
    TURN = 1
    BACKGROUND = 2


class Runner:
    """Runs jobs on one thread, turns before background work; `nice` > 0 runs them at a
    lower CPU priority than the rest of the process (on Linux: the thread's own nice value;
    elsewhere it is ignored)."""

    def __init__(self, name: str = "turns", nice: int = 0) -> None:
        self._nice = nice
        self._queue: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, priority: Priority = Priority.TURN) -> None:
        self._queue.put((int(priority), next(self._seq), job))

    def _run(self) -> None:
        # Linux only: there a thread's id names the thread alone (elsewhere it could name a
        # process).
        if self._nice and sys.platform == "linux":
            try:
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid,
                               min(19, os.getpriority(os.PRIO_PROCESS, tid) + self._nice))
            except (OSError, AttributeError) as exc:
                log.debug("%s: cannot lower the thread's priority: %s", self._thread.name, exc)
        while (job := self._queue.get()[2]) is not None:
            _safely(job)

    def close(self, timeout: float = 5.0) -> bool:
        """Finish what is queued and stop; False if a job was still running at `timeout`."""
        self._queue.put((99, next(self._seq), None))
        self._thread.join(timeout)
        return not self._thread.is_alive()


class InlineRunner:
    """Keeps jobs until `run_pending` runs one, on the caller's thread."""

    def __init__(self) -> None:
        self._jobs: list[tuple[int, int, Job]] = []
        self._seq = itertools.count()

    def submit(self, job: Job, priority: Priority = Priority.TURN) -> None:
        self._jobs.append((int(priority), next(self._seq), job))
        self._jobs.sort(key=lambda j: j[:2])

    def run_pending(self) -> bool:
        """Run the next job; False if there was none."""
        if not self._jobs:
            return False
        _safely(self._jobs.pop(0)[2])
        return True

    def close(self, timeout: float = 5.0) -> bool:  # noqa: ARG002
        self._jobs.clear()
        return True


def _safely(job: Job) -> None:
    try:
        job()
    except Exception:  # a job reports its own failures; this is the last resort
        log.exception("a turn job failed")
