"""What the system can do right now, as the router asks it: one tier at a time.

The models room owns the answers (which tiers are resident or loadable within the RAM
budget, which have a projector to take images and audio); this adapts its registry to the
router's `Callable[[Tier], bool]` questions so neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sarai.models.errors import ModelError
from sarai.models.settings import BackendKind, Tier


class _Admission(Protocol):
    ok: bool


class CanLoad(Protocol):
    def can_load(self, tier: Tier) -> _Admission: ...


class _Resolved(Protocol):
    backend: BackendKind
    starter: bool
    mmproj: object | None


class _Settings(Protocol):
    mmproj: str | None


class Resolves(Protocol):
    def resolve(self, tier: Tier) -> _Resolved: ...
    def settings(self, tier: Tier) -> _Settings: ...


def from_registry(registry: CanLoad) -> Callable[[Tier], bool]:
    """A tier can serve when the registry says it is resident or would fit the budget now."""

    def can_serve(tier: Tier) -> bool:
        try:
            return bool(registry.can_load(tier).ok)
        except ModelError:
            return False

    return can_serve


def media_from_registry(registry: Resolves) -> Callable[[Tier], bool]:
    """A tier takes attachments directly when its llama.cpp model has a projector (mmproj),
    or when it is a transformers Omni checkpoint (its thinker has both encoders).

    This is the condition under which the registry serves the tier with an Omni backend;
    other tiers get an attachment's transcript, or nothing, instead.
    """

    def takes_media(tier: Tier) -> bool:
        try:
            r = registry.resolve(tier)
        except ModelError:
            return False
        if r.backend is BackendKind.TRANSFORMERS:
            return True
        if r.backend is not BackendKind.LLAMACPP:
            return False
        return r.mmproj is not None or (registry.settings(tier).mmproj is not None
                                        and not r.starter)

    return takes_media
