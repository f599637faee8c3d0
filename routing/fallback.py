"""The order in which tiers stand in for one another when the chosen one cannot serve."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from sarai.models.settings import Tier

LADDER: dict[Tier, tuple[Tier, ...]] = {
    Tier.OMNI_QUALITY: (Tier.EXPERT, Tier.OMNI_FAST, Tier.TINY),
    Tier.EXPERT: (Tier.OMNI_FAST, Tier.TINY),
    Tier.OMNI_FAST: (Tier.TINY,),
    Tier.TINY: (),
}


def candidates(tier: Tier, *, only: Collection[Tier] | None = None) -> tuple[Tier, ...]:
    """The chosen tier followed by its fallbacks, best first.

    `only` keeps the tiers able to do the job (e.g. the multimodal ones for an image).
    """
    ladder = (tier, *LADDER[tier])
    return ladder if only is None else tuple(t for t in ladder if t in only)


@dataclass(frozen=True)
class Plan:
    tier: Tier  # the tier to try first
    candidates: tuple[Tier, ...]  # everything to try, in order, `tier` first
    passed_over: tuple[Tier, ...]  # better tiers skipped because they cannot serve now


def plan(wanted: Tier, *, can_serve: Callable[[Tier], bool] | None,
         only: Collection[Tier] | None = None) -> Plan:
    """Walk the ladder from `wanted`, skipping tiers the system says cannot serve.

    `can_serve` is asked lazily, best tier first, so a turn whose first choice is resident
    costs one question. With no availability information every step is tried. When nothing
    on the ladder can serve, the ladder is still returned whole: trying is the only way left
    to find out, and a failed load is reported clearly by the tier itself.
    """
    ladder = candidates(wanted, only=only) or (wanted,)
    if can_serve is None:
        return Plan(ladder[0], ladder, ())
    for i, tier in enumerate(ladder):
        if can_serve(tier):
            rest = tuple(t for t in ladder[i + 1 :] if can_serve(t))
            return Plan(tier, (tier, *rest), ladder[:i])
    return Plan(ladder[0], ladder, ())
