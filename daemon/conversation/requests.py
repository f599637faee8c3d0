"""What can ask SARAi for a turn, as one frozen request.

Speech, push-to-talk, typed text (spoken or not), attachments, the control socket, the CLI
and the tray all become a `TurnRequest` on the conversation's one queue. A request that cannot
be answered is refused with `RequestError`, whose text says why in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sarai.audio.vad import Utterance

LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "ca")
"""Languages a typed turn may ask its answer in."""


class Source(StrEnum):
    """What kind of turn it is (the turn record's `source`)."""

    VOICE = "voice"  # heard on the microphone
    PUSH = "push"  # heard while push-to-talk was held
    TEXT = "text"  # typed
    MEDIA = "media"  # typed, with attachments


class Origin(StrEnum):
    """Who sent it."""

    MICROPHONE = "microphone"
    SOCKET = "socket"  # a control-socket client: the CLI, the tray, a script
    LOCAL = "local"  # the process itself (sarai listen / ask without a daemon, tests)


class RequestError(Exception):
    """A request that cannot be answered; str() is one sentence for the user."""


@dataclass(frozen=True)
class MediaRef:
    """An attachment named by its path; read when its turn runs, unless the asker already
    read it (`loaded`: its decoded parts)."""

    path: Path
    kind: str | None = None  # audio | image | video; None = tell by content
    loaded: tuple = field(default=(), compare=False)


@dataclass(frozen=True)
class TurnRequest:
    source: Source
    origin: Origin = Origin.LOCAL
    text: str = ""
    media: tuple[MediaRef, ...] = ()
    utterance: Utterance | None = None
    language: str | None = None  # answer in this language (default: as heard / configured)
    speak: bool = True  # say the answer aloud
    output: Path | None = None  # …into this WAV file instead of the speaker

    @property
    def spoken_turn(self) -> bool:
        return self.utterance is not None


def typed(text: str, *, media: tuple[MediaRef, ...] = (), language: str | None = None,
          speak: bool = True, output: Path | None = None,
          origin: Origin = Origin.LOCAL) -> TurnRequest:
    """A typed request, checked: RequestError if it cannot be answered as given."""
    text = text.strip()
    if not text and not media:
        raise RequestError("nothing to ask: the question is empty and nothing is attached")
    if language is not None and language not in LANGUAGES:
        raise RequestError(f"unknown language '{language}': use one of {', '.join(LANGUAGES)}")
    if output is not None:
        output = output.expanduser()
        if output.is_dir():
            raise RequestError(f"cannot write the answer to {output}: it is a directory")
        if not output.parent.is_dir():
            raise RequestError(f"cannot write the answer to {output}: "
                               f"{output.parent} does not exist")
    return TurnRequest(Source.MEDIA if media else Source.TEXT, origin, text, media,
                       language=language, speak=speak or output is not None, output=output)
