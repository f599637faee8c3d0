"""One turn's record: what was heard, who answered, what was said, and each stage's time.

Printed by `--json`, carried by turn events, kept in the history and the turn log. Kept
apart from the turn's machinery so that reading a record (the CLI, the tray) loads none of it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields

from sarai.daemon.conversation.stages import StageClock, timings


@dataclass
class TurnRecord:
    """Everything about one turn; printed by --json, sent in turn events, written to the
    turn log. `stages` are the stage timestamps (ms from the turn's zero), `timings` the
    figures derived from them (see daemon.conversation.stages)."""

    transcript: str
    tier: str = ""
    reason: str = ""
    reply: str = ""
    model: str = ""
    language: str = ""
    source: str = "voice"
    timings: dict[str, float] = field(default_factory=dict)
    stages: dict[str, list[float]] = field(default_factory=dict)
    audio_s: float | None = None
    interrupted: bool = False
    error: str | None = None
    spoken: str = ""  # what was given to the voice, when it was not the whole reply
    id: int = 0
    outcome: str = ""  # done | interrupted | dropped (see TurnPhase)
    started_at: float = field(default_factory=time.time)  # epoch seconds of the turn's zero

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TurnRecord:
        """A record from its dict (a turn event, the history, the turn log), ignoring keys
        it does not know, such as those of records written by older versions."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def seal(self, marks: StageClock) -> None:
        """Copy the stage marks in, with the figures derived from them."""
        self.stages = marks.stages()
        self.timings = timings(self.stages)
        self.started_at = round(time.time() - (marks.now() - marks.zero), 3)
