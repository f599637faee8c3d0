"""The messages the conversation core takes, each a small frozen value.

`system` messages (interruptions, stop) overtake everything queued; the rest are taken in
the order they were posted.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import ClassVar

from sarai.audio.playback import Output
from sarai.audio.vad import Utterance
from sarai.daemon.conversation.record import TurnRecord
from sarai.daemon.conversation.requests import TurnRequest
from sarai.daemon.conversation.stages import Stage
from sarai.daemon.events import ListenMode


@dataclass(frozen=True)
class Message:
    system: ClassVar[bool] = False


# --- from the microphone's front end, in the order heard ---------------------------------

@dataclass(frozen=True)
class MicLive(Message):
    live: bool  # the microphone's audio flows (a fresh stream takes a moment to start)


@dataclass(frozen=True)
class SpeechState(Message):
    speaking: bool  # the VAD hears speech now


@dataclass(frozen=True)
class Paused(Message):
    utterance: Utterance  # the speech so far: it may be the whole turn
    near_answer: bool = False  # it began while SARAi's voice or its echo may have been heard


@dataclass(frozen=True)
class Resumed(Message):
    pass


@dataclass(frozen=True)
class EndLikely(Message):
    """The pause after a speculative turn has lasted `listen.complete_silence_ms` and the
    turn reads and sounds finished: it ends as soon as its answer has something to say, unless
    the user goes on first (the segmenter's full silence ends it in any case)."""

    turn: int


@dataclass(frozen=True)
class Ended(Message):
    utterance: Utterance
    near_answer: bool = False  # it began while SARAi's voice or its echo may have been heard


@dataclass(frozen=True)
class BargeIn(Message):
    system: ClassVar[bool] = True
    turn: int  # the answer the user talked over
    onset: float  # capture time of their first voiced frame


# --- from clients ----------------------------------------------------------------------

@dataclass(frozen=True)
class Ask(Message):
    request: TurnRequest
    future: Future = field(compare=False)


@dataclass(frozen=True)
class SetMode(Message):
    system: ClassVar[bool] = True
    mode: ListenMode


@dataclass(frozen=True)
class Push(Message):
    system: ClassVar[bool] = True
    active: bool


@dataclass(frozen=True)
class Forget(Message):
    future: Future = field(compare=False)


@dataclass(frozen=True)
class Interrupt(Message):
    system: ClassVar[bool] = True
    reason: str


@dataclass(frozen=True)
class Stop(Message):
    system: ClassVar[bool] = True


# --- from the devices ---------------------------------------------------------------------

@dataclass(frozen=True)
class OutputChanged(Message):
    output: Output | None


@dataclass(frozen=True)
class Loading(Message):
    what: str | None  # a model being loaded outside any turn; None: finished


@dataclass(frozen=True)
class DeviceError(Message):
    message: str | None  # None: the devices are fine again


# --- from the runner and the speaker, about one turn ---------------------------------------

@dataclass(frozen=True)
class Started(Message):
    turn: int


@dataclass(frozen=True)
class StageReached(Message):
    turn: int
    stage: Stage
    detail: str | None = None


@dataclass(frozen=True)
class Transcribed(Message):
    turn: int
    text: str


@dataclass(frozen=True)
class TurnEndHeard(Message):
    turn: int
    probability: float | None  # the end-of-turn model's; None: it could not judge


@dataclass(frozen=True)
class Written(Message):
    turn: int
    record: TurnRecord = field(compare=False)


@dataclass(frozen=True)
class Dropped(Message):
    turn: int
    why: str


@dataclass(frozen=True)
class Primed(Message):
    turn: int  # the next prompt was read into the model after this turn (or gave way)


@dataclass(frozen=True)
class AnswerReady(Message):
    turn: int  # a speculative turn's held answer has its first audio


@dataclass(frozen=True)
class FirstAudio(Message):
    turn: int
    at: float


@dataclass(frozen=True)
class PlaybackDone(Message):
    turn: int
    at: float
    cut: bool = False  # stopped before all of it was heard (a barge-in, the speaker went away)
