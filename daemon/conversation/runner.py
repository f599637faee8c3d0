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

from sarai.audio.clock import Clock

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
    """Keeps jobs until `run_pending` runs one, so a run is the same every time.

    Without a clock a job runs on the caller's thread. With one (the device-free harness's
    virtual clock), a job may `sleep` in that clock's time, as a slow model would take it: each
    job runs on a thread of its own, but only ever while the caller waits for it, so still one
    thing happens at a time; a job asleep is taken up again by the first `run_pending` once its
    time has come, and no other job starts meanwhile (as on the real runner).
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._jobs: list[tuple[int, int, Job]] = []
        self._seq = itertools.count()
        self._clock = clock
        self._running: _Stepped | None = None  # the job now running, or asleep

    def submit(self, job: Job, priority: Priority = Priority.TURN) -> None:
        self._jobs.append((int(priority), next(self._seq), job))
        self._jobs.sort(key=lambda j: j[:2])

    def run_pending(self) -> bool:
        """Run the next job (or go on with the one asleep, if its time has come); False if
        there was nothing to do."""
        step = self._running
        if step is not None:
            assert self._clock is not None
            if self._clock.now() < step.until:
                return False
            step.resume()
            return True
        if not self._jobs:
            return False
        job = self._jobs.pop(0)[2]
        if self._clock is None:
            _safely(job)
            return True
        self._running = step = _Stepped(job, self)
        step.start()
        return True

    def sleep(self, seconds: float) -> None:
        """Called by a job: let `seconds` of the clock's time pass before it goes on."""
        step = self._running
        if self._clock is None or step is None or not step.is_current():
            return  # run on the caller's thread: time cannot pass under it
        step.until = self._clock.now() + seconds
        step.wait()

    def _finished(self, step: _Stepped) -> None:
        if self._running is step:
            self._running = None

    def close(self, timeout: float = 5.0) -> bool:  # noqa: ARG002
        self._jobs.clear()
        self._running = None  # a job asleep stays so (its thread is a daemon)
        return True


class _Stepped:
    """One job of an InlineRunner with a clock, on its own thread, run in lock step with
    the caller: `start` and `resume` return once the job has finished or fallen asleep."""

    def __init__(self, job: Job, owner: InlineRunner) -> None:
        self.until = 0.0
        self._job = job
        self._owner = owner
        self._go = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inline-job", daemon=True)

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def start(self) -> None:
        self._thread.start()
        self._paused.wait()

    def resume(self) -> None:
        self._paused.clear()
        self._go.set()
        self._paused.wait()

    def wait(self) -> None:  # on the job's thread
        self._go.clear()
        self._paused.set()
        self._go.wait()

    def _run(self) -> None:
        try:
            _safely(self._job)
        finally:
            self._owner._finished(self)
            self._paused.set()


def _safely(job: Job) -> None:
    try:
        job()
    except Exception:  # a job reports its own failures; this is the last resort
        log.exception("a turn job failed")
