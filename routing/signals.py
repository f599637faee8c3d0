"""Everything the router knows about a turn, gathered before it decides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sarai.models.attachments import Attachment as MediaAttachment
from sarai.models.attachments import AttachmentError, MediaKind, kind_of
from sarai.models.settings import Tier
from sarai.routing.audio_features import AudioFeatures
from sarai.routing.errors import UnsupportedAttachment

# The models room's kinds (audio, image, video): one vocabulary for attachments everywhere.
AttachmentKind = MediaKind


@dataclass(frozen=True)
class Attachment:
    """Something sent along with the words; only its kind matters to the router."""

    kind: MediaKind
    name: str

    @classmethod
    def from_path(cls, path: str | Path) -> Attachment:
        """The file at `path`, typed by its content; raises UnsupportedAttachment."""
        p = Path(path)
        try:
            kind = kind_of(p)
        except AttachmentError as exc:
            raise UnsupportedAttachment(f"cannot attach: {exc}") from exc
        return cls(kind, p.name)

    @classmethod
    def of(cls, media: MediaAttachment) -> Attachment:
        """The router's view of an attachment the models room has loaded."""
        return cls(media.kind, media.source.name)


@dataclass(frozen=True)
class TurnSignals:
    """What the router knows about a turn; the audio fields are absent for typed text.

    `audio_s` and `speech_ratio` are the segmenter's own numbers; `audio`, when present,
    is the fuller analysis (and wins). `available` is the set of tiers the system says can
    serve now (resident, or loadable within the RAM budget, and not failing); None means
    "not known", in which case the Router asks its availability source, if it has one.
    """

    text: str
    audio_s: float | None = None
    speech_ratio: float | None = None
    audio: AudioFeatures | None = None
    attachments: tuple[Attachment, ...] = ()
    available: frozenset[Tier] | None = None

    @property
    def duration_s(self) -> float | None:
        return self.audio.duration_s if self.audio is not None else self.audio_s
