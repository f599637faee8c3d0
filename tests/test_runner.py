"""The runner that works on turns, and the end-of-turn worker's lower CPU priority."""

import os
import sys
import threading

import pytest

from sarai.daemon.conversation.runner import Priority, Runner


def _niceness_of_a_job(runner: Runner) -> int:
    seen: list[int] = []
    done = threading.Event()

    def job() -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        done.set()

    runner.submit(job, Priority.VOICE)
    assert done.wait(5)
    runner.close()
    return seen[0]


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
def test_a_nice_runner_works_at_a_lower_priority_than_the_process():
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert _niceness_of_a_job(Runner(name="plain")) == own
    assert _niceness_of_a_job(Runner(name="nice", nice=10)) == min(own + 10, 19)
    # Only that thread: the process (and this thread) keep their priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


def test_jobs_run_in_priority_order():
    runner, order, gate = Runner(), [], threading.Event()
    runner.submit(gate.wait, Priority.VOICE)  # holds the runner while the rest queue up
    for p in (Priority.BACKGROUND, Priority.TURN, Priority.VOICE):
        runner.submit(lambda p=p: order.append(p), p)
    gate.set()
    assert runner.close()
    assert order == [Priority.VOICE, Priority.TURN, Priority.BACKGROUND]


def test_an_inline_job_that_sleeps_in_virtual_time_goes_on_when_that_time_has_come():
    from sarai.audio.virtual import VirtualClock
    from sarai.daemon.conversation.runner import InlineRunner

    clock = VirtualClock(start=0.0)
    runner = InlineRunner(clock)
    order: list[str] = []

    def slow() -> None:
        order.append("slow starts")
        runner.sleep(0.5)
        order.append(f"slow goes on at {clock.now():.1f}")

    runner.submit(slow, Priority.VOICE)
    runner.submit(lambda: order.append("next"), Priority.VOICE)
    assert runner.run_pending()  # starts the slow job, which falls asleep
    assert order == ["slow starts"]
    clock.advance(0.3)
    assert not runner.run_pending()  # not yet; and nothing else starts meanwhile
    clock.advance(0.3)
    assert runner.run_pending()
    assert order == ["slow starts", "slow goes on at 0.6"]
    assert runner.run_pending() and order[-1] == "next"
    assert not runner.run_pending()
