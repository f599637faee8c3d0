"""Which model serves each tier, loaded lazily, with starter models standing in."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from models import starter
from models.backend import ChatBackend
from models.errors import ModelError, ModelUnavailable
from models.llamacpp import LlamaCppBackend
from models.ollama_backend import DEFAULT_HOST, OllamaBackend, ollama_has_model
from models.settings import ModelsSettings, Residency, Tier, TierSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedTier:
    """What will answer for a tier, and why."""

    tier: Tier
    backend: str  # "llamacpp", "ollama", …
    model: str  # what a person would call it
    path: Path | None  # GGUF file for in-process backends
    starter: bool  # a starter model stands in for the configured one
    why: str = ""  # why the configured model is not used

    @property
    def key(self) -> tuple:
        """Tiers with the same key share one loaded instance."""
        return (self.backend, str(self.path) if self.path else self.model)


class ModelRegistry:
    """Resolves tiers to models and keeps loaded backends, one instance per distinct model."""

    def __init__(self, settings: ModelsSettings, models_dir: Path) -> None:
        self._s = settings
        self._dir = models_dir
        self._resolved: dict[Tier, ResolvedTier] = {}
        self._loaded: dict[tuple, ChatBackend] = {}
        self._lock = threading.Lock()

    def settings(self, tier: Tier) -> TierSettings:
        return self._s.tier(tier)

    def model_path(self, name: str) -> Path:
        p = Path(name).expanduser()
        return p if p.is_absolute() else self._dir / p

    def resolve(self, tier: Tier) -> ResolvedTier:
        if tier not in self._resolved:
            self._resolved[tier] = self._resolve(tier, self._s.tier(tier))
        return self._resolved[tier]

    def _resolve(self, tier: Tier, ts: TierSettings) -> ResolvedTier:
        if ts.backend == "llamacpp":
            path = self.model_path(ts.model)
            if path.is_file():
                return ResolvedTier(tier, "llamacpp", path.name, path, False)
            why = f"{ts.model} not found in {path.parent}"
        elif ts.backend == "ollama":
            ok, why = ollama_has_model(ts.host or DEFAULT_HOST, ts.model)
            if ok:
                return ResolvedTier(tier, "ollama", ts.model, None, False)
        else:
            why = f"backend '{ts.backend}' is not available in this build"
        if ts.starter is None:
            raise ModelUnavailable(f"tier {tier}: {why}, and no starter model is configured")
        model = starter.CATALOGUE.get(ts.starter)
        if model is None or model.kind is not starter.Kind.LLM:
            raise ModelError(f"tier {tier}: '{ts.starter}' is not a starter language model")
        return ResolvedTier(tier, "llamacpp", model.title, model.path(self._dir), True, why)

    def starter_notice(self) -> str | None:
        """One plain sentence naming the tiers that run on starter models, or None."""
        subs = [self.resolve(t) for t in Tier]
        subs = [r for r in subs if r.starter]
        if not subs:
            return None
        lines = ", ".join(f"{r.tier} → {r.model}" for r in subs)
        return (f"Production models not found, so starter models answer instead: {lines}. "
                "See 'sarai models' to install the real ones.")

    def backend(self, tier: Tier) -> ChatBackend:
        """The loaded model for `tier`, loading it on first use."""
        r = self.resolve(tier)
        ts = self._s.tier(tier)
        with self._lock:
            if r.key in self._loaded:
                return self._loaded[r.key]
            if r.backend == "ollama":
                keep = -1 if ts.residency is Residency.PINNED else f"{int(ts.ttl_s)}s"
                b: ChatBackend = OllamaBackend(
                    ts.host or DEFAULT_HOST, ts.model, n_ctx=ts.n_ctx, keep_alive=keep
                )
            else:
                assert r.path is not None
                if r.starter and not r.path.is_file():
                    raise ModelUnavailable(
                        f"tier {tier}: starter model {r.model} is not installed; run 'sarai setup'"
                    )
                log.info("loading %s for %s", r.model, tier)
                b = LlamaCppBackend(
                    r.path, n_ctx=ts.n_ctx, threads=ts.threads, n_batch=ts.n_batch,
                    use_mmap=ts.use_mmap,
                )
            self._loaded[r.key] = b
            return b

    def preload_pinned(self) -> None:
        """Load every tier whose residency is `pinned`, so the first turn does not wait."""
        for tier in Tier:
            if self._s.tier(tier).residency is Residency.PINNED:
                self.backend(tier)

    def is_loaded(self, tier: Tier) -> bool:
        return self.resolve(tier).key in self._loaded

    def close(self) -> None:
        with self._lock:
            for b in self._loaded.values():
                b.close()
            self._loaded.clear()
