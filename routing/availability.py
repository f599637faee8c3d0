"""Which tiers can serve right now, as the router asks it: one tier at a time.

The models room owns the answer (resident, loadable within the RAM budget, not failing);
this adapts its registry to the router's `Callable[[Tier], bool]` so neither imports the
other's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from models.errors import ModelError
from models.settings import Tier


class _Admission(Protocol):
    ok: bool


class CanLoad(Protocol):
    def can_load(self, tier: Tier) -> _Admission: ...


def from_registry(registry: CanLoad) -> Callable[[Tier], bool]:
    """A tier can serve when the registry says it is resident or would fit the budget now."""

    def can_serve(tier: Tier) -> bool:
        try:
            return bool(registry.can_load(tier).ok)
        except ModelError:
            return False

    return can_serve
