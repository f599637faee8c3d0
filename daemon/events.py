"""The small typed vocabulary shared by the voice loop, the control API and the tray."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """What SARAi is doing right now; exactly one at a time."""

    IDLE = "idle"  # started, microphone not open yet
    LISTENING = "listening"  # waiting for speech
    HEARING = "hearing"  # speech in progress
    THINKING = "thinking"  # transcribing / routing / generating before any audio
    SPEAKING = "speaking"  # playing an answer
    LOADING = "loading"  # a model the turn needs is being loaded
    MUTED = "muted"  # microphone closed
    ERROR = "error"  # a part failed; see the event's message


class ListenMode(StrEnum):
    ALWAYS = "always"  # hands-free: every utterance is a turn
    WAKE = "wake"  # only utterances that start with the wake phrase
    PUSH = "push"  # only while push-to-talk is held
    MUTED = "muted"  # microphone closed


class EventKind(StrEnum):
    STATE = "state"  # data: {"state": State, "message": str | None}
    MODE = "mode"  # data: {"mode": ListenMode}
    PHASE = "phase"  # data: {"turn": id, "phase": TurnPhase, "source": Source}
    TURN = "turn"  # data: a finished turn's record (TurnRecord.as_dict())
    RESIDENCY = "residency"  # data: {"models": [...]} what is resident now
    LOG = "log"  # data: {"level": str, "message": str}


@dataclass(frozen=True)
class Event:
    """One thing that happened, as it travels to subscribers (one JSON object per line)."""

    kind: EventKind
    data: dict[str, Any]
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        # `at` is always the event's own time, epoch seconds, whatever the data holds.
        return {"event": self.kind.value, **self.data, "at": round(self.at, 3)}
