"""Telling the user talking over an answer from noise and echo, quickly.

Speech over an answer first *pauses* playback (after `pause_ms` of voiced audio, so the
answer goes quiet almost as soon as the user starts), then, once it has gone on for
`confirm_ms` more, *interrupts* the answer. If it fades before that (a cough, a burst of
echo the canceller missed), playback resumes where it paused. Pausing early also makes the
confirmation cleaner: while SARAi is silent the microphone hears only the user.

Just after the pause, the echo of what SARAi said before it is still on its way to the
microphone: voiced frames then ("in flight") cannot confirm a candidate on their own. They
are held, and count once the voice goes on after the echo has passed (`after_ms`). A short
word has little left by then: without its held frames a candidate faded, and the answer went
on over the user's next words.
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
    # Voiced audio after the echo in flight has passed that confirms a paused candidate
    # together with the voiced frames held while it was in flight.
    after_ms: int = 60

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
        self._after = timing.frames(timing.after_ms)
        self._voiced = 0
        self._held = 0  # voiced frames while the echo was in flight
        self._voiced_after = 0  # voiced frames since, once paused
        self._quiet = 0
        self._paused = False
        self.onset: float | None = None  # capture time the candidate speech began

    @property
    def paused(self) -> bool:
        return self._paused

    def reset(self) -> BargeAction:
        """Forget the candidate (the answer ended); RESUME if playback was paused for it."""
        action = BargeAction.RESUME if self._paused else BargeAction.NONE
        self._voiced = self._quiet = self._held = self._voiced_after = 0
        self._paused = False
        self.onset = None
        return action

    def feed(self, voiced: bool, captured_at: float, *, in_flight: bool = False) -> BargeAction:
        """`captured_at`: when the frame's last sample arrived (perf_counter); `in_flight`:
        the frame was voiced, but SARAi's echo from before the pause may be in it (it counts
        as quiet unless the voice goes on after it)."""
        if in_flight and self._paused:
            self._held += 1
            voiced = False
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
        if self._paused:
            self._voiced_after += 1
        if self._voiced >= self._confirm or (
                self._held and self._voiced_after >= self._after
                and self._voiced + self._held >= self._confirm):
            return BargeAction.INTERRUPT
        if not self._paused and self._voiced >= self._pause:
            self._paused = True
            return BargeAction.PAUSE
        return BargeAction.NONE
