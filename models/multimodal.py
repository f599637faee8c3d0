"""A user turn with attachments, and what to do when a tier cannot take them.

`MediaMessage` travels through the same `ChatBackend.stream()` as a plain `Message`: backends
that understand media (the llama.cpp Omni backend with a projector, the transformers backend)
read `media`; any other backend sees only `content`, so callers must decide first, with
`prepare_user_turn`, whether the tier can take the audio or needs a transcript instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sarai.models.attachments import Attachment, MediaKind
from sarai.models.backend import Message
from sarai.models.errors import ModelError


@dataclass(frozen=True)
class MediaMessage:
    """A message whose attachments go to the model in order, before its text."""

    role: Literal["system", "user", "assistant"]
    content: str
    media: tuple[Attachment, ...] = field(default=())

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    @property
    def kinds(self) -> set[MediaKind]:
        return {a.kind for a in self.media}


@dataclass(frozen=True)
class UserTurn:
    """The user message to send, and a sentence for the turn's reason when media changed."""

    message: Message | MediaMessage
    note: str | None = None


DEFAULT_IMAGE_QUESTION = "What is in this picture?"
"""Asked about images sent without a question or a recording."""


def prepare_user_turn(
    text: str,
    media: Sequence[Attachment],
    *,
    accepts: frozenset[MediaKind],
    tier: str,
    transcribe: Callable[[np.ndarray], str] | None = None,
    why_not: str | None = None,
) -> UserTurn:
    """Keep what the tier takes; turn audio it cannot take into a transcript, and say so.

    A tier that cannot take the audio gets its transcript with the typed text, and the note
    explains that the sound itself did not reach the model (`why_not` says why, e.g. "could
    not load its projector (…)"; by default, that it has no projector configured). Images
    it cannot take are left out with a note saying so, never silently. Images sent with no
    question and no recording are asked about with `DEFAULT_IMAGE_QUESTION`; when nothing
    is left to ask at all, ModelError says so.
    """
    why = why_not or "has no projector configured"
    notes = [a.note for a in media if a.note]
    keep = tuple(a for a in media if a.kind in accepts)
    lost = [a for a in media if a.kind not in accepts]
    parts = [text.strip()] if text.strip() else []
    if any(a.kind is MediaKind.AUDIO for a in lost):
        if transcribe is None:
            raise ModelError(f"tier {tier} {why}, and no speech recogniser is loaded to "
                             "transcribe the audio")
        heard = " ".join(
            transcribe(a.samples).strip()
            for a in lost
            if a.kind is MediaKind.AUDIO and a.samples is not None
        ).strip()
        parts.insert(0, heard)
        notes.append(f"{tier} {why}, so the audio was transcribed and only the transcript "
                     "was sent")
    if any(a.kind is MediaKind.IMAGE for a in lost):
        notes.append(f"{tier} cannot see images: it {why}, so they were left out")
    if not any(p for p in parts) and not any(a.kind is MediaKind.AUDIO for a in keep):
        if not keep:
            raise ModelError(f"{tier} cannot see images: it {why}, and no question was asked")
        parts = [DEFAULT_IMAGE_QUESTION]
    body = "\n".join(p for p in parts if p)
    msg: Message | MediaMessage = MediaMessage("user", body, keep) if keep else Message(
        "user", body
    )
    return UserTurn(msg, "; ".join(notes) or None)
