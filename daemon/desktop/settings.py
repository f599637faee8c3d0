"""Settings for what SARAi does in the desktop session: notifications."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class NoteKind(StrEnum):
    """What a desktop notification can be about; each is switched on or off on its own."""

    MODEL = "model"  # a model load was refused or failed (another tier answered)
    MICROPHONE = "microphone"  # the microphone went away, and came back
    ERRORS = "errors"  # the daemon reports an error
    TRANSCRIPTS = "transcripts"  # each turn: what was heard and what was answered


class NotifySettings(BaseModel):
    """`notify:` in the config. All off by default; the tray's Notifications menu changes them
    in the configuration file, and the running daemon follows the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: bool = Field(False, description="a model load refused or failed")
    microphone: bool = Field(False, description="the microphone lost, and back")
    errors: bool = Field(False, description="daemon errors")
    transcripts: bool = Field(False, description="each turn's transcript and answer")
    timeout_s: float = Field(8.0, ge=0, le=120, description="how long a notice stays (0 = "
                             "until dismissed)")

    def on(self, kind: NoteKind) -> bool:
        return bool(getattr(self, kind.value))
