"""A turn's life as an explicit state machine.

    heard → speculating → answering → speaking → done
                 │             │           └──→ interrupted
                 └──→ dropped  ├──→ interrupted
                               └──→ dropped / done

`speculating`: answered at a short pause with its audio held back, in case the pause is the
end of the turn. `answering`: committed; transcribing, routing, generating. `speaking`: its
answer is being heard. `dropped`: it never became a turn (the user went on, no wake phrase,
nothing was said). Only the conversation core moves a turn, through `advance`, which checks
the step and says what happened.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum

from sarai.audio.playback import HeldSink
from sarai.audio.wav_output import WavOutput
from sarai.daemon.conversation.record import TurnRecord
from sarai.daemon.conversation.requests import TurnRequest
from sarai.daemon.conversation.stages import StageClock
from sarai.models.backend import CancelToken


class TurnPhase(StrEnum):
    HEARD = "heard"
    SPECULATING = "speculating"
    ANSWERING = "answering"
    SPEAKING = "speaking"
    DONE = "done"
    INTERRUPTED = "interrupted"
    DROPPED = "dropped"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({TurnPhase.DONE, TurnPhase.INTERRUPTED, TurnPhase.DROPPED})

_NEXT: dict[TurnPhase, frozenset[TurnPhase]] = {
    TurnPhase.HEARD: frozenset({TurnPhase.SPECULATING, TurnPhase.ANSWERING,
                                TurnPhase.DROPPED}),
    TurnPhase.SPECULATING: frozenset({TurnPhase.ANSWERING, TurnPhase.DROPPED}),
    TurnPhase.ANSWERING: frozenset({TurnPhase.SPEAKING, TurnPhase.DONE,
                                    TurnPhase.INTERRUPTED, TurnPhase.DROPPED}),
    TurnPhase.SPEAKING: frozenset({TurnPhase.DONE, TurnPhase.INTERRUPTED}),
}


class IllegalStep(RuntimeError):
    """A turn was asked to move in a way its life does not allow (a bug, not bad input)."""


@dataclass(eq=False)
class Turn:
    """One turn as the core tracks it. Written only by the core's thread; the runner that
    answers it writes only its record and reads the rest."""

    id: int
    request: TurnRequest
    marks: StageClock
    cancel: CancelToken = field(default_factory=CancelToken)
    held: HeldSink | None = None  # a speculative turn's audio, until committed
    phase: TurnPhase = TurnPhase.HEARD
    complete: bool = False  # the speaker is done: its words and its sound both say so
    text_complete: bool = False  # its transcript reads as a finished sentence
    heard_complete: bool = False  # the end-of-turn model hears a finished turn
    end_likely: bool = False  # the pause says done; it ends once its answer has a sound
    barged: bool = False  # the user talked over its answer
    written: TurnRecord | None = None  # the runner's record, once the reply is written
    heard_all: bool = False  # its audio has been heard (or there was none)
    priming: bool = False  # the next prompt is being read into the model
    cut: bool = False  # its audio was cut off by the output device, not by the user
    why: str = ""  # why it was dropped
    needs_wake: bool = False  # it must start with a wake phrase to be answered
    near_answer: bool = False  # its speech began while SARAi's voice may have been heard
    future: Future[TurnRecord] | None = None  # a typed turn's asker waits on this
    file_output: WavOutput | None = None  # its answer goes into a file, closed at the end

    @property
    def speculative(self) -> bool:
        return self.phase is TurnPhase.SPECULATING

    @property
    def audible(self) -> bool:
        """Its answer is to be heard on the speaker (not only printed, nor written to a file)."""
        return self.request.speak and self.request.output is None

    @property
    def committed(self) -> bool:
        return self.phase in (TurnPhase.ANSWERING, TurnPhase.SPEAKING)

    def advance(self, to: TurnPhase) -> bool:
        """Move to `to`; False if it is already there, IllegalStep if the step is not one
        of its life's."""
        if to is self.phase:
            return False
        if to not in _NEXT.get(self.phase, frozenset()):
            raise IllegalStep(f"turn {self.id}: {self.phase} → {to}")
        self.phase = to
        return True
