"""The order in which tiers stand in for one another when the chosen one cannot serve."""

from __future__ import annotations

from models.settings import Tier

LADDER: dict[Tier, tuple[Tier, ...]] = {
    Tier.OMNI_QUALITY: (Tier.EXPERT, Tier.OMNI_FAST, Tier.TINY),
    Tier.EXPERT: (Tier.OMNI_FAST, Tier.TINY),
    Tier.OMNI_FAST: (Tier.TINY,),
    Tier.TINY: (),
}


def candidates(tier: Tier) -> tuple[Tier, ...]:
    """The chosen tier followed by its fallbacks, best first."""
    return (tier, *LADDER[tier])
