"""Settings for the model tiers and the RAM budget, built once from the config and passed in."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Tier(StrEnum):
    OMNI_FAST = "omni_fast"
    OMNI_QUALITY = "omni_quality"
    EXPERT = "expert"
    TINY = "tiny"


class BackendKind(StrEnum):
    """What serves a tier's model."""

    LLAMACPP = "llamacpp"  # a GGUF file in this process (llama-cpp-python)
    OLLAMA = "ollama"  # an Ollama server
    OPENAI = "openai"  # any OpenAI-compatible server
    TRANSFORMERS = "transformers"  # a Qwen2.5-Omni checkpoint folder in this process

    @property
    def in_process(self) -> bool:
        """The model's memory is this process's own (a server holds its own)."""
        return self in (BackendKind.LLAMACPP, BackendKind.TRANSFORMERS)

    @property
    def server(self) -> bool:
        """Served over HTTP: needs a host."""
        return self in (BackendKind.OLLAMA, BackendKind.OPENAI)


class Residency(StrEnum):
    PINNED = "pinned"  # loaded at start, never unloaded
    TTL = "ttl"  # unloaded after `ttl_s` idle seconds
    ON_DEMAND = "on_demand"  # loaded when needed, unloaded under memory pressure


KvType = Literal["f16", "q8_0", "q4_0"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class TierSettings(BaseModel):
    """One model tier: which backend serves it, with which model, and how it stays resident."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendKind = BackendKind.LLAMACPP
    model: str = Field(description="GGUF file (path or name in models_dir), checkpoint folder "
                       "(transformers) or server model name")
    host: str | None = Field(None, description="server URL for the ollama/openai backends")
    api_key_env: str | None = Field(
        None, description="openai backend: environment variable holding the API key"
    )
    starter: str | None = Field(
        "smollm2-135m", description="starter model used while `model` is not available"
    )
    mmproj: str | None = Field(
        None, description="multimodal projector GGUF, loaded for media turns within the budget"
    )
    mmproj_keep_s: float = Field(
        0.0, ge=0, description="seconds the projector stays loaded after a media turn (0: none)"
    )
    n_ctx: int = Field(2048, ge=128, le=1_048_576)
    n_ctx_long: int | None = Field(None, ge=128, description="second context size, same file")
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    threads: int | None = Field(None, ge=1, description="CPU threads; null = all cores")
    n_batch: int = Field(512, ge=1)
    n_ubatch: int = Field(
        128, ge=1, description="tokens llama.cpp computes at once (at most n_batch); its "
        "attention scores, n_ubatch x n_ctx x heads x 4 bytes, become resident as a "
        "conversation grows, and beyond ~128 a CPU reads a prompt no faster")
    use_mmap: bool = True
    kv_type: KvType = Field("f16", description="KV cache element type (q8_0/q4_0 save RAM)")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$",
                        description="transformers backend: where the model runs")
    dtype: Dtype = Field("auto", description="transformers backend: weights' type")
    residency: Residency = Residency.ON_DEMAND
    ttl_s: float = Field(60.0, gt=0)

    def micro_batch(self, projector: bool) -> int:
        """Tokens llama.cpp computes at once for this tier: `n_batch` when a projector's media
        chunk must fit in one micro-batch (a Gemma 3 image attends to itself non-causally,
        and llama.cpp aborts on one split in two), else `n_ubatch` (open_llama and the
        estimate keep it within n_batch and n_ctx)."""
        return self.n_batch if projector else self.n_ubatch


class ModelsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    omni_fast: TierSettings
    omni_quality: TierSettings
    expert: TierSettings
    tiny: TierSettings
    search_dirs: tuple[Path, ...] = Field(
        (), description="more folders searched for GGUF files (besides models_dir)"
    )
    pull_url: str = Field(
        "https://huggingface.co",
        description="where `sarai models pull` downloads from ($SARAI_PULL_URL overrides)",
    )

    def tier(self, tier: Tier) -> TierSettings:
        return getattr(self, tier.value)


class ResidencySettings(BaseModel):
    """The one RAM budget that everything SARAi keeps resident must fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget_gb: float = Field(12.0, gt=0, description="LLMs + projectors + ASR + TTS, in GB")
    check_available: bool = Field(
        True, description="also refuse a load that the machine's free RAM cannot hold"
    )
    ollama_ps_timeout_s: float = Field(1.0, gt=0, description="how long to wait for Ollama's ps")

    @property
    def budget_mb(self) -> float:
        return self.budget_gb * 1024.0
