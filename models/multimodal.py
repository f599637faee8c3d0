"""A user turn with attachments, and what to do when a tier cannot take them.

`MediaMessage` travels through the same `ChatBackend.stream()` as a plain `Message`: backends
that understand media (the llama.cpp Omni backend with a projector, the transformers backend)
read `media`; any other backend sees only `content`, so callers must decide first, with
`prepare_user_turn`, whether the tier can take the audio or needs a transcript instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from models.attachments import Attachment, MediaKind
from models.backend import Message


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


@runtime_checkable
class MediaCapable(Protocol):
    """A backend that can be handed `MediaMessage`s with these kinds of attachments."""

    def accepts(self) -> frozenset[MediaKind]: ...


def accepted_kinds(backend: object) -> frozenset[MediaKind]:
    """What a backend can take directly (empty for text-only backends)."""
    if isinstance(backend, MediaCapable):
        return backend.accepts()
    return frozenset()


@dataclass(frozen=True)
class UserTurn:
    """The user message to send, and a sentence for the turn's reason when media changed."""

    message: Message | MediaMessage
    note: str | None = None


def prepare_user_turn(
    text: str,
    media: Sequence[Attachment],
    *,
    accepts: frozenset[MediaKind],
    tier: str,
    transcribe: Callable[[np.ndarray], str] | None = None,
) -> UserTurn:
    """Keep what the tier takes; turn audio it cannot take into a transcript, and say so.

    A tier without a projector gets the transcript of the audio with the typed text, and the
    note explains that the sound itself did not reach the model. Images it cannot take are
    left out with a note saying so, never silently.
    """
    notes = [a.note for a in media if a.note]
    keep = tuple(a for a in media if a.kind in accepts)
    lost = [a for a in media if a.kind not in accepts]
    parts = [text.strip()] if text.strip() else []
    if any(a.kind is MediaKind.AUDIO for a in lost):
        if transcribe is None:
            from models.errors import ModelError

            raise ModelError(
                f"tier {tier} has no projector for audio and no speech recogniser is loaded"
            )
        heard = " ".join(
            transcribe(a.samples).strip()
            for a in lost
            if a.kind is MediaKind.AUDIO and a.samples is not None
        ).strip()
        parts.insert(0, heard)
        notes.append(f"{tier} has no projector configured, so the audio was transcribed "
                     "and only the transcript was sent")
    if any(a.kind is MediaKind.IMAGE for a in lost):
        notes.append(f"{tier} cannot see images (no vision projector), so they were left out")
    body = "\n".join(p for p in parts if p)
    msg: Message | MediaMessage = MediaMessage("user", body, keep) if keep else Message(
        "user", body
    )
    return UserTurn(msg, "; ".join(notes) or None)


class MediaBackends:
    """Omni backends with projectors for media turns, one per tier, built from the registry.

    Until the registry builds `OmniBackend` itself for tiers with an `mmproj`, a media turn
    gets its backend here (outside the RAM budget's bookkeeping); text turns are unaffected.
    """

    def __init__(self, registry) -> None:  # models.registry.ModelRegistry
        self._registry = registry
        self._built: dict[str, object] = {}

    def get(self, tier):  # -> OmniBackend | None
        from models.mtmd import OmniBackend

        r = self._registry.resolve(tier)
        ts = self._registry.settings(tier)
        if r.backend != "llamacpp" or r.path is None:
            return None
        mmproj = getattr(r, "mmproj", None)
        if mmproj is None and getattr(ts, "mmproj", None) and not r.starter:
            mmproj = self._registry.model_path(ts.mmproj)
        if mmproj is None:
            return None  # the registry's backend serves it; audio goes as a transcript
        key = f"{r.path}|{mmproj}"
        if key not in self._built:
            self._built[key] = OmniBackend(
                r.path, mmproj=mmproj, mmproj_keep_s=getattr(ts, "mmproj_keep_s", 0.0),
                n_ctx=ts.n_ctx, threads=ts.threads, n_batch=ts.n_batch, use_mmap=ts.use_mmap,
            )
        return self._built[key]

    def close(self) -> None:
        for b in self._built.values():
            b.close()
        self._built.clear()
