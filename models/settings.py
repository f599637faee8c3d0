"""Settings for the model tiers, built once from the config and passed in."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Tier(StrEnum):
    OMNI_FAST = "omni_fast"
    OMNI_QUALITY = "omni_quality"
    EXPERT = "expert"
    TINY = "tiny"


class Residency(StrEnum):
    PINNED = "pinned"  # loaded at start, never unloaded
    TTL = "ttl"  # unloaded after `ttl_s` idle seconds
    ON_DEMAND = "on_demand"  # loaded when needed, unloaded under memory pressure


class TierSettings(BaseModel):
    """One model tier: which backend serves it, with which model, and how it stays resident."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["llamacpp", "ollama", "openai"] = "llamacpp"
    model: str = Field(description="GGUF file (path or name in models_dir) or server model name")
    host: str | None = Field(None, description="server URL for the ollama/openai backends")
    starter: str | None = Field(
        "smollm2-135m", description="starter model used while `model` is not available"
    )
    n_ctx: int = Field(2048, ge=128, le=1_048_576)
    n_ctx_long: int | None = Field(None, ge=128, description="second context size, same file")
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    threads: int | None = Field(None, ge=1, description="CPU threads; null = all cores")
    n_batch: int = Field(512, ge=1)
    use_mmap: bool = True
    residency: Residency = Residency.ON_DEMAND
    ttl_s: float = Field(60.0, gt=0)


class ModelsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    omni_fast: TierSettings
    omni_quality: TierSettings
    expert: TierSettings
    tiny: TierSettings

    def tier(self, tier: Tier) -> TierSettings:
        return getattr(self, tier.value)
