"""The stages of a turn as data: one enum, and a timestamp for each stage a turn went through.

Every turn record carries `stages`: for each stage, [start, end] in milliseconds from the
turn's zero — the end of speech for a spoken turn, the moment the request arrived for a typed
one. A stage that is a moment (first token, first audio) has start == end. The familiar
`timings` (asr, route, model_load, ttft, first_audio, first_answer_audio, total, …) are
derived from them in one place, so no two parts of the code can disagree about a figure.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from sarai.audio.clock import Clock


class Stage(StrEnum):
    """In the order a turn meets them."""

    END_OF_SPEECH = "end_of_speech"  # the user's last voiced frame (zero of a spoken turn)
    REQUEST = "request"  # a typed request arrived (zero of a typed turn)
    ASR = "asr"  # transcribing
    ROUTE = "route"  # choosing the tier
    MODEL_LOAD = "model_load"  # loading the tier's model (only when it was not resident)
    FIRST_TOKEN = "first_token"
    FIRST_AUDIO = "first_audio"  # the first sound heard, a filler included
    FIRST_ANSWER_AUDIO = "first_answer_audio"  # the answer's own first sound
    BARGE_IN = "barge_in"  # the user talked over it: [their first voiced frame, silence]
    DONE = "done"


# Timing name → (stage, what of it). "span" is the stage's duration, "end" its end from zero.
_TIMINGS: tuple[tuple[str, Stage, str], ...] = (
    ("asr", Stage.ASR, "span"),
    ("route", Stage.ROUTE, "span"),
    ("model_load", Stage.MODEL_LOAD, "span"),
    ("ttft", Stage.FIRST_TOKEN, "end"),
    ("first_audio", Stage.FIRST_AUDIO, "end"),
    ("first_answer_audio", Stage.FIRST_ANSWER_AUDIO, "end"),
    ("barge_in_stop", Stage.BARGE_IN, "span"),
    ("total", Stage.DONE, "end"),
)


class StageClock:
    """Marks stages against one zero (a `clock` reading); thread-safe enough for one writer
    per stage. `zero` may be set later (a speculative turn's end of speech)."""

    def __init__(self, clock: Clock, zero: float | None = None,
                 on_mark: Callable[[Stage, str | None], None] | None = None) -> None:
        self._clock = clock
        self.zero = clock.now() if zero is None else zero
        self._marks: dict[Stage, list[float]] = {}
        self._on_mark = on_mark  # told when a stage begins or a moment happens

    def _told(self, stage: Stage, detail: str | None = None) -> None:
        if self._on_mark is not None:
            self._on_mark(stage, detail)

    def now(self) -> float:
        return self._clock.now()

    def elapsed_ms(self, at: float | None = None) -> float:
        """Milliseconds from zero to `at` (default: now)."""
        return 1000 * ((self._clock.now() if at is None else at) - self.zero)

    def begin(self, stage: Stage, at: float | None = None, detail: str | None = None) -> None:
        t = self._clock.now() if at is None else at
        self._marks[stage] = [t, t]
        self._told(stage, detail)

    def end(self, stage: Stage, at: float | None = None) -> None:
        t = self._clock.now() if at is None else at
        if stage in self._marks:
            self._marks[stage][1] = t
        else:
            self._marks[stage] = [t, t]

    def point(self, stage: Stage, at: float | None = None, *, first: bool = True) -> None:
        """A moment; with `first`, only the first time it happens counts."""
        if first and stage in self._marks:
            return
        t = self._clock.now() if at is None else at
        self._marks[stage] = [t, t]
        self._told(stage)

    def span(self, stage: Stage, start: float, end: float) -> None:
        self._marks[stage] = [start, end]

    def has(self, stage: Stage) -> bool:
        return stage in self._marks

    def stages(self) -> dict[str, list[float]]:
        """{stage: [start_ms, end_ms]} from zero, in stage order."""
        return {s.value: [_ms(self._marks[s][0] - self.zero), _ms(self._marks[s][1] - self.zero)]
                for s in Stage if s in self._marks}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def timings(stages: dict[str, list[float]]) -> dict[str, float]:
    """The named figures a person reads (see the module comment), from a record's stages."""
    out: dict[str, float] = {}
    for name, stage, what in _TIMINGS:
        mark = stages.get(stage.value)
        if mark is not None:
            start, end = mark
            out[name] = round(end - start, 1) if what == "span" else end
    return out
