"""PortAudio's stream times on SARAi's clock, when Python runs a callback late."""

from __future__ import annotations

import pytest

from sarai.audio.devices import StreamClock


def test_a_callback_that_runs_late_does_not_move_its_stamps():
    """PortAudio calls for a block on time, but the Python callback runs 65 ms later (another
    thread held the interpreter): the block's DAC time is still right, and so must be the
    time it is given on our clock."""
    clock = StreamClock()
    offsets = []
    for k in range(200):
        current = 1000.0 + 0.04 * k  # PortAudio's own clock
        late = 0.065 if k in (50, 51, 120) else 0.001 * (k % 3)  # when our callback ran
        offsets.append(clock.offset(current + 5.0 + late, current))
    assert all(o == pytest.approx(5.0, abs=0.0025) for o in offsets)


def test_a_clock_that_steps_is_followed_within_the_window():
    clock = StreamClock(window_s=2.0)
    for k in range(100):
        clock.offset(5.0 + 0.04 * k, 0.04 * k)
    # PortAudio's clock steps back two seconds (the wall clock it reads was set back).
    got = [clock.offset(6.0 + 4.0 + 0.04 * k, 4.0 - 1.0 + 0.04 * k) for k in range(100)]
    assert got[0] == pytest.approx(5.0)  # not believed at once: it may be a late callback
    assert got[-1] == pytest.approx(7.0)  # but within the window it is
