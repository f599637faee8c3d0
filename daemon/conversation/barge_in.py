"""Telling the user talking over an answer from noise and echo, quickly.

Speech over an answer first *pauses* playback (after `pause_ms` of voiced audio, so the
answer goes quiet almost as soon as the user starts), then, once it has gone on for
`confirm_ms` more, *interrupts* the answer. If it fades before that (a cough, a burst of
echo the canceller missed), playback resumes where it paused. Pausing early also makes the
confirmation cleaner: while SARAi is silent the microphone hears only the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BargeAction(StrEnum):
    NONE = "none"
    PAUSE = "pause"  # the user may be talking: go quiet
    RESUME = "resume"  # it was not the user: go on
    INTERRUPT = "interrupt"  # it is the user: stop the answer


@dataclass(frozen=True)
class BargeInTiming:
    frame_ms: int = 30
    pause_ms: int = 60  # voiced audio that pauses playback
    confirm_ms: int = 150  # …and that much more that interrupts the answer
    fade_ms: int = 150  # unvoiced audio that ends a candidate before it is confirmed
    # …once playback is paused for it: an echo canceller holds the user's voice down for a
    # while after the loudspeaker goes quiet, so a paused candidate is given longer.
    paused_fade_ms: int = 150

    def frames(self, ms: int) -> int:
        return max(1, -(-ms // self.frame_ms))


class BargeInDetector:
    """Feed one frame's voicing at a time while an answer plays; act on what it returns."""

    def __init__(self, timing: BargeInTiming) -> None:
        self._t = timing
        self._pause = timing.frames(timing.pause_ms)
        self._confirm = self._pause + timing.frames(timing.confirm_ms)
        self._fade = timing.frames(timing.fade_ms)
        self._paused_fade = timing.frames(timing.paused_fade_ms)
        self._voiced = 0
        self._quiet = 0
        self._paused = False
        self.onset: float | None = None  # capture time the candidate speech began

    @property
    def paused(self) -> bool:
        return self._paused

    def reset(self) -> BargeAction:
        """Forget the candidate (the answer ended); RESUME if playback was paused for it."""
        action = BargeAction.RESUME if self._paused else BargeAction.NONE
        self._voiced = self._quiet = 0
        self._paused = False
        self.onset = None
        return action

    def feed(self, voiced: bool, captured_at: float) -> BargeAction:
        """`captured_at`: when the frame's last sample arrived (perf_counter)."""
        if not voiced:
            if self.onset is None:
                return BargeAction.NONE
            self._quiet += 1
            fade = self._paused_fade if self._paused else self._fade
            return self.reset() if self._quiet >= fade else BargeAction.NONE
        if self.onset is None:
            self.onset = captured_at - self._t.frame_ms / 1000
        self._voiced += 1
        self._quiet = 0
        if self._voiced >= self._confirm:
            return BargeAction.INTERRUPT
        if not self._paused and self._voiced >= self._pause:
            self._paused = True
            return BargeAction.PAUSE
        return BargeAction.NONE
