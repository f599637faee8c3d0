"""Which model serves each tier, loaded through the residency manager, with starter stand-ins.

`backend(tier)` loads the tier's model (once, whoever asks) within the RAM budget and returns a
handle whose replies keep the model busy, so it is never unloaded mid-reply. A tier whose model
cannot be loaded (missing, over budget, server down) raises ModelUnavailable, and the caller
falls back to another tier.

A llama.cpp tier with an `mmproj` is served by `OmniBackend` for text and media turns alike
(one text model per tier); its projector is a resident of its own, loaded by the first
multimodal prompt (see `models.omni_tier`). A transformers tier is a Qwen2.5-Omni checkpoint
whose thinker takes audio and images itself. `media(tier)` says what a turn's attachments can
reach now.

A configured model that is there but unusable (a folder or a device where a GGUF file should
be, a file that is not GGUF or is cut short, a model with no chat template) is an error that
names it, never silently replaced by a starter; a starter stands in only for a model that is
not there at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from sarai.models import starter
from sarai.models.attachments import MediaKind
from sarai.models.backend import CancelToken, ChatBackend, Message
from sarai.models.chat_template import template_for
from sarai.models.discovery import Found, discover, find_model
from sarai.models.errors import ModelError, ModelUnavailable
from sarai.models.llamacpp import LlamaCppBackend, check_gguf
from sarai.models.memory import MIB
from sarai.models.ollama_backend import (
    DEFAULT_HOST,
    OllamaBackend,
    is_local,
    keep_alive_for,
    ollama_has_model,
    ollama_model_size,
    ollama_ps,
)
from sarai.models.omni_tier import MediaSupport, ResidentProjector, projector_cost, projector_kinds
from sarai.models.openai_backend import OpenAIBackend, openai_has_model
from sarai.models.residency import ResidencyManager
from sarai.models.resident import (
    Admission,
    Cost,
    Listener,
    ResidentInfo,
    ResidentKind,
    ResidentState,
)
from sarai.models.settings import (
    BackendKind,
    ModelsSettings,
    Residency,
    ResidencySettings,
    Tier,
    TierSettings,
)
from sarai.models.transformers_backend import check_checkpoint
from sarai.models.transformers_backend import estimate as checkpoint_estimate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedTier:
    """What will answer for a tier, and why."""

    tier: Tier
    backend: BackendKind
    model: str  # what a person would call it
    path: Path | None  # GGUF file (llamacpp) or checkpoint folder (transformers)
    starter: bool  # a starter model stands in for the configured one
    why: str = ""  # why the configured model is not used
    host: str | None = None  # server for ollama / openai
    mmproj: Path | None = None  # projector (a resident of its own, loaded for media turns)


class TierHandle:
    """What `backend(tier)` returns: streams through the resident model, keeping it busy.

    If the model was unloaded since (TTL, eviction, a user's unload), the next reply loads
    it again within the budget, or raises ModelUnavailable.
    """

    def __init__(self, registry: ModelRegistry, tier: Tier, long_context: bool) -> None:
        self._registry = registry
        self.tier = tier
        self.long_context = long_context
        self.name = registry.resolve(tier).model

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        with self._registry._lease(self.tier, self.long_context) as backend:
            yield from backend.stream(messages, max_tokens=max_tokens, temperature=temperature,
                                      cancel=cancel)

    def close(self) -> None:
        """The registry owns the model; use `registry.unload(tier)` to free it."""


class ModelRegistry:
    """Resolves tiers to models and keeps them resident within one RAM budget."""

    def __init__(
        self,
        settings: ModelsSettings,
        models_dir: Path,
        *,
        residency: ResidencySettings | None = None,
        manager: ResidencyManager | None = None,
    ) -> None:
        self._s = settings
        self._dir = models_dir
        self.residency = manager or ResidencyManager(residency or ResidencySettings())
        self._owns_manager = manager is None
        self._resolved: dict[Tier, ResolvedTier] = {}
        self._found: list[Found] | None = None
        self._handles: dict[tuple[Tier, bool], TierHandle] = {}
        self._lock = threading.RLock()
        self._warm = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sarai-warm")

    # --- resolution ----------------------------------------------------------------------

    def settings(self, tier: Tier) -> TierSettings:
        return self._s.tier(tier)

    def model_path(self, name: str) -> Path:
        p = Path(name).expanduser()
        return p if p.is_absolute() else self._dir / p

    def discovered(self) -> list[Found]:
        """GGUF files on this machine (models folder, search_dirs, HF cache, Ollama store)."""
        with self._lock:
            if self._found is None:
                self._found = discover(self._dir, self._s.search_dirs)
            return self._found

    def _named(self, name: str) -> Path | None:
        """What a configured name points at, if anything is there (a file, a folder, a
        device): the path itself, or the name in models_dir or search_dirs."""
        p = Path(name).expanduser()
        if p.is_absolute():
            return p if p.exists() else None
        for folder in (self._dir, *self._s.search_dirs):
            if (folder.expanduser() / p).exists():
                return folder.expanduser() / p
        return None

    def find_file(self, name: str) -> Path | None:
        """A configured GGUF name as a path: what the name points at (a path, a name in
        models_dir or search_dirs; checked by the caller), or a file found in the HF cache
        or Ollama's store (by file, repo or Ollama name)."""
        named = self._named(name)
        if named is not None:
            return named
        if Path(name).expanduser().is_absolute():
            return None
        found = find_model(name, self.discovered())
        return found.path if found else None

    def resolve(self, tier: Tier) -> ResolvedTier:
        with self._lock:
            if tier not in self._resolved:
                self._resolved[tier] = self._resolve(tier, self._s.tier(tier))
            return self._resolved[tier]

    def _resolve(self, tier: Tier, ts: TierSettings) -> ResolvedTier:
        kind = ts.backend
        if kind is BackendKind.LLAMACPP:
            path = self.find_file(ts.model)
            if path is not None:
                try:
                    template_for(check_gguf(path))
                except ModelError as exc:
                    raise ModelError(f"tier {tier}: {exc}") from exc
                # A configured projector that is missing stays named, so media turns can
                # say so instead of acting as if none were configured.
                mmproj = (self.find_file(ts.mmproj) or self.model_path(ts.mmproj)
                          if ts.mmproj else None)
                return ResolvedTier(tier, kind, path.name, path, False, mmproj=mmproj)
            why = f"{ts.model} not found in {self._dir} or the other places searched"
        elif kind is BackendKind.TRANSFORMERS:
            path = self._named(ts.model)
            if path is not None:
                try:
                    check_checkpoint(path)
                except ModelError as exc:
                    raise ModelError(f"tier {tier}: {exc}") from exc
                return ResolvedTier(tier, kind, path.name, path, False)
            why = f"{ts.model} not found in {self._dir} or the other places searched"
        elif kind is BackendKind.OLLAMA:
            host = ts.host or DEFAULT_HOST
            ok, why = ollama_has_model(host, ts.model)
            if ok:
                return ResolvedTier(tier, kind, ts.model, None, False, host=host)
        else:
            if ts.host is None:
                raise ModelError(f"tier {tier}: the openai backend needs a host (server URL)")
            ok, why = openai_has_model(ts.host, ts.model, api_key_env=ts.api_key_env)
            if ok:
                return ResolvedTier(tier, kind, ts.model, None, False, host=ts.host)
        if ts.starter is None:
            raise ModelUnavailable(f"tier {tier}: {why}, and no starter model is configured")
        model = starter.CATALOGUE.get(ts.starter)
        if model is None or model.kind is not starter.Kind.LLM:
            raise ModelError(f"tier {tier}: '{ts.starter}' is not a starter language model")
        if not model.chat:
            chat = ", ".join(n for n, m in starter.CATALOGUE.items()
                             if m.kind is starter.Kind.LLM and m.chat)
            raise ModelError(f"tier {tier}: {why}, and the starter '{ts.starter}' "
                             f"({model.title}) is a pretrained model that repeats a chat back "
                             f"instead of answering it; use a chat starter ({chat})")
        return ResolvedTier(tier, BackendKind.LLAMACPP, model.title, model.path(self._dir),
                            True, why)

    def starter_notice(self) -> str | None:
        """Plain sentences naming the tiers that run on starter models and the tiers that
        cannot run at all (with the reason), or None when every tier has its own model."""
        subs: list[ResolvedTier] = []
        broken: list[str] = []
        for t in Tier:
            try:
                r = self.resolve(t)
            except ModelError as exc:
                broken.append(str(exc))
                continue
            if r.starter:
                subs.append(r)
        notes = []
        if subs:
            lines = ", ".join(f"{r.tier} → {r.model}" for r in subs)
            notes.append(f"Production models not found, so starter models answer instead: "
                         f"{lines}. See 'sarai models' to install the real ones.")
        if broken:
            notes.append("Tiers that cannot answer, so others answer for them: "
                         + "; ".join(broken) + ".")
        return " ".join(notes) or None

    # --- keys and costs ------------------------------------------------------------------

    def n_ctx(self, tier: Tier, long_context: bool = False) -> int:
        ts = self._s.tier(tier)
        if self.resolve(tier).backend is BackendKind.TRANSFORMERS:
            # One model object serves both sizes (its cache grows as needed).
            return max(ts.n_ctx, ts.n_ctx_long or 0)
        return ts.n_ctx_long if long_context and ts.n_ctx_long else ts.n_ctx

    def key(self, tier: Tier, long_context: bool = False) -> str:
        """The residency key: one resident per file and context size (llama.cpp), per
        checkpoint (transformers), or per server model."""
        r = self.resolve(tier)
        if r.backend is BackendKind.LLAMACPP:
            return f"llamacpp:{r.path}@{self.n_ctx(tier, long_context)}"
        if r.backend is BackendKind.TRANSFORMERS:
            return f"transformers:{r.path}"
        return f"{r.backend}:{r.host}/{r.model}"

    def projector_key(self, tier: Tier, long_context: bool = False) -> str:
        """The residency key of the tier's projector (one per text model it is bound to)."""
        r = self.resolve(tier)
        return f"mmproj:{r.mmproj}@{self.key(tier, long_context)}"

    def estimate(self, tier: Tier, long_context: bool = False) -> Cost:
        """What loading the tier will take from the budget (reads the GGUF header)."""
        r = self.resolve(tier)
        ts = self._s.tier(tier)
        if r.backend is BackendKind.LLAMACPP:
            assert r.path is not None
            if r.starter and not r.path.is_file():
                raise ModelUnavailable(
                    f"tier {tier}: starter model {r.model} is not installed; run 'sarai setup'"
                )
            try:
                # The file may have gone (or changed) since the tier was resolved.
                info = check_gguf(r.path)
            except ModelError as exc:
                raise ModelError(f"tier {tier}: {exc}") from exc
            est = info.estimate_mb(self.n_ctx(tier, long_context), kv_type=ts.kv_type,
                                   n_batch=ts.n_batch,
                                   n_ubatch=ts.micro_batch(r.mmproj is not None))
            # The projector is not counted here: it is a resident of its own (projector_key).
            return Cost(weights_mb=est.weights_mb, extra_mb=est.kv_mb + est.compute_mb,
                        weights_file=str(r.path.resolve()) if ts.use_mmap else None)
        if r.backend is BackendKind.TRANSFORMERS:
            assert r.path is not None
            try:
                return checkpoint_estimate(r.path, dtype=ts.dtype, device=ts.device,
                                           n_ctx=self.n_ctx(tier, long_context))
            except ModelError as exc:
                raise ModelError(f"tier {tier}: {exc}") from exc
        if r.backend is BackendKind.OLLAMA and r.host and is_local(r.host):
            size = ollama_model_size(r.host, r.model)
            return Cost(extra_mb=size / MIB if size else 0.0)
        return Cost()  # a remote server's memory is not ours

    # --- loading -------------------------------------------------------------------------

    def _loader(self, tier: Tier, long_context: bool) -> Callable[[], ChatBackend]:
        r = self.resolve(tier)
        ts = self._s.tier(tier)
        if r.backend is BackendKind.OLLAMA:
            def load_ollama() -> ChatBackend:
                b = OllamaBackend(r.host or DEFAULT_HOST, r.model,
                                  n_ctx=self.n_ctx(tier, long_context),
                                  keep_alive=keep_alive_for(ts))
                b.load()
                return b
            return load_ollama
        if r.backend is BackendKind.OPENAI:
            assert r.host is not None
            return lambda: OpenAIBackend(r.host or "", r.model, api_key_env=ts.api_key_env)
        assert r.path is not None
        if r.backend is BackendKind.TRANSFORMERS:
            folder, ctx = r.path, self.n_ctx(tier, long_context)

            def load_transformers() -> ChatBackend:
                from sarai.models.transformers_backend import TransformersOmniBackend

                log.info("loading %s for %s with transformers", r.model, tier)
                return TransformersOmniBackend(folder, device=ts.device, dtype=ts.dtype,
                                               threads=ts.threads, n_ctx=ctx)
            return load_transformers
        path, mmproj = r.path, r.mmproj
        n_ctx = self.n_ctx(tier, long_context)

        def load_llamacpp() -> ChatBackend:
            log.info("loading %s for %s", r.model, tier)
            if mmproj is None:
                return LlamaCppBackend(path, n_ctx=n_ctx, threads=ts.threads,
                                       n_batch=ts.n_batch, use_mmap=ts.use_mmap,
                                       kv_type=ts.kv_type, n_ubatch=ts.micro_batch(False))
            from sarai.models.mtmd import OmniBackend

            text_key = self.key(tier, long_context)

            def projector(text_model: Callable[[], object]) -> ResidentProjector:
                return ResidentProjector(
                    self.residency, self.projector_key(tier, long_context), mmproj, text_model,
                    parent=text_key, tier=tier, threads=ts.threads or os.cpu_count() or 1,
                    keep_s=ts.mmproj_keep_s)

            return OmniBackend(path, projector=projector, n_ctx=n_ctx, threads=ts.threads,
                               n_batch=ts.n_batch, use_mmap=ts.use_mmap, kv_type=ts.kv_type)
        return load_llamacpp

    def _acquire(self, tier: Tier, long_context: bool, *, use: bool) -> ChatBackend:
        r = self.resolve(tier)
        ts = self._s.tier(tier)
        return self.residency.acquire(
            self.key(tier, long_context),
            self._loader(tier, long_context),
            name=r.model + (" (long context)" if long_context and ts.n_ctx_long else ""),
            cost=lambda: self.estimate(tier, long_context),
            tier=tier,
            kind=ResidentKind.LLM,
            policy=ts.residency,
            ttl_s=ts.ttl_s if ts.residency is Residency.TTL else None,
            closer=lambda b: b.close(),
            external=not r.backend.in_process,
            detail=f"{r.backend}, n_ctx {self.n_ctx(tier, long_context)}"
            + (", starter stand-in" if r.starter else ""),
            use=use,
        )

    @contextlib.contextmanager
    def _lease(self, tier: Tier, long_context: bool) -> Iterator[ChatBackend]:
        """The resident model for one reply: busy (never unloaded) until the block ends. The
        backend itself lets one reply at a time through (see `StreamingBackend`)."""
        key = self.key(tier, long_context)
        backend = self._acquire(tier, long_context, use=True)
        try:
            yield backend
        finally:
            self.residency.release(key)

    def backend(self, tier: Tier, *, long_context: bool = False) -> ChatBackend:
        """The tier's model, loaded (within the budget) if it is not resident yet."""
        self._acquire(tier, long_context, use=False)
        with self._lock:
            handle = self._handles.get((tier, long_context))
            if handle is None:
                handle = self._handles[(tier, long_context)] = TierHandle(self, tier, long_context)
            return handle

    def is_loaded(self, tier: Tier, *, long_context: bool = False) -> bool:
        try:
            key = self.key(tier, long_context)
        except ModelError:
            return False
        return self.residency.state(key) is ResidentState.RESIDENT

    @contextlib.contextmanager
    def borrow(self, tier: Tier) -> Iterator[ChatBackend | None]:
        """The tier's model if it is resident (else None), for background work that must
        neither load it nor keep it resident (see ResidencyManager.borrow)."""
        try:
            key = self.key(tier)
        except ModelError:
            yield None
            return
        with self.residency.borrow(key) as backend:
            yield backend

    def preload_pinned(self) -> None:
        """Load every tier whose residency is `pinned`, so the first turn does not wait."""
        for tier in Tier:
            if self._s.tier(tier).residency is Residency.PINNED:
                self.backend(tier)

    # --- for the router and the daemon ---------------------------------------------------

    def media(self, tier: Tier, *, long_context: bool = False) -> MediaSupport:
        """What the tier's model can take directly now: the kinds its projector encodes, if
        it has one whose file is there and which the RAM budget admits (or holds already)."""
        try:
            r = self.resolve(tier)
        except ModelError as exc:
            return MediaSupport(frozenset(), f"is unavailable ({exc})")
        if r.starter and self._s.tier(tier).mmproj:
            return MediaSupport(frozenset(), f"runs on the starter model {r.model}, which has "
                                "no projector")
        if r.backend is BackendKind.TRANSFORMERS:
            # The Omni thinker has its audio and vision encoders in the model itself.
            return MediaSupport(frozenset({MediaKind.AUDIO, MediaKind.IMAGE}))
        if r.backend is not BackendKind.LLAMACPP or r.mmproj is None:
            return MediaSupport(frozenset(), "has no projector configured")
        if not r.mmproj.is_file():
            return MediaSupport(frozenset(), f"has no projector: {r.mmproj} was not found")
        try:
            kinds = projector_kinds(r.mmproj)
            adm = self.residency.admission(self.projector_key(tier, long_context),
                                           projector_cost(r.mmproj),
                                           parent=self.key(tier, long_context))
        except ModelError as exc:
            return MediaSupport(frozenset(), f"cannot use its projector ({exc})")
        if not adm.ok:
            return MediaSupport(frozenset(), f"could not load its projector {r.mmproj.name} "
                                f"({adm.reason})")
        missing = [k for k in (MediaKind.AUDIO, MediaKind.IMAGE) if k not in kinds]
        why = f"has a projector that encodes no {' or '.join(missing)}" if missing else None
        return MediaSupport(kinds, why)

    def can_load(self, tier: Tier, *, long_context: bool = False) -> Admission:
        """Whether the tier is resident or could be loaded now, and what that would evict."""
        try:
            key = self.key(tier, long_context)
            cost = self.estimate(tier, long_context)
        except ModelError as exc:
            return Admission(False, str(exc), 0.0, 0.0)
        return self.residency.admission(key, cost,
                                        external=not self.resolve(tier).backend.in_process)

    def warm_up(self, tier: Tier, *, long_context: bool = False,
                evict: bool = False) -> Future[bool]:
        """Load the tier in the background (e.g. when the router expects it soon).

        Without `evict`, a warm-up that would push out another resident is skipped. The future
        holds True once it is resident, False if skipped or it failed (the reason is logged).
        """
        def run() -> bool:
            adm = self.can_load(tier, long_context=long_context)
            if adm.resident:
                return True
            if not adm.ok or (adm.evicts and not evict):
                log.info("not warming up %s: %s", tier, adm.reason if not adm.ok
                         else f"it would evict {', '.join(adm.evicts)}")
                return False
            try:
                self.backend(tier, long_context=long_context)
                return True
            except ModelError as exc:
                log.warning("warming up %s failed: %s", tier, exc)
                return False

        return self._warm.submit(run)

    def load(self, tier: Tier, *, long_context: bool = False) -> ResidentInfo:
        """Load the tier now (`sarai models load`); its snapshot afterwards."""
        self.backend(tier, long_context=long_context)
        info = self.residency.info(self.key(tier, long_context))
        if info is None:
            raise ModelUnavailable(f"{tier} was unloaded again right after loading")
        return info

    def unload(self, tier: Tier, *, force: bool = False, wait_s: float = 30.0) -> bool:
        """Unload the tier's model (both context sizes); False when nothing was resident.
        Pinned models stay unless `force`; a reply in progress is waited for (`wait_s`)."""
        return any([self.residency.unload(k, force=force, reason=f"unloaded ({tier})",
                                          wait_s=wait_s, serves=self._served_by(k))
                    for k in sorted(self._keys(tier))])

    def _keys(self, tier: Tier) -> set[str]:
        """The tier's residency keys, at both context sizes."""
        return {self.key(tier, False), self.key(tier, True)}

    def _served_by(self, key: str) -> list[Tier]:
        """The tiers whose model is the resident `key` (e.g. starter tiers sharing one file)."""
        out = []
        for t in Tier:
            try:
                if key in self._keys(t):
                    out.append(t)
            except ModelError:
                continue
        return out

    def pin(self, tier: Tier, pinned: bool | None = True) -> ResidentInfo:
        """Pin the tier's model (loading it first), unpin it (False) or restore the config's
        policy (None). Lasts while this process runs."""
        if pinned:
            self.backend(tier)
        return self.residency.set_pinned(self.key(tier), pinned)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self.residency.subscribe(listener)

    def resident(self, *, include_ollama: bool = True) -> list[ResidentInfo]:
        """SARAi's residents, plus what configured Ollama servers report as loaded."""
        infos = self.residency.snapshot()
        if not include_ollama:
            return infos
        hosts = {self._s.tier(t).host or DEFAULT_HOST for t in Tier
                 if self._s.tier(t).backend is BackendKind.OLLAMA}
        by_key = {i.key: i for i in infos}
        timeout = self.residency.settings.ollama_ps_timeout_s
        for host in sorted(hosts):
            try:
                loaded = ollama_ps(host, timeout)
            except ModelUnavailable as exc:
                log.debug("%s", exc)
                continue
            for m in loaded:
                note = (f"Ollama holds {m.size_mb:.0f} MB"
                        + (f", expires in {m.expires_in_s:.0f} s" if m.expires_in_s is not None
                           else ", kept loaded"))
                key = f"ollama:{host}/{m.model.removesuffix(':latest')}"
                mine = by_key.get(key) or by_key.get(f"ollama:{host}/{m.model}")
                if mine is not None:
                    by_key[mine.key] = replace(mine, detail=f"{mine.detail}; {note}".strip("; "),
                                               expires_in_s=m.expires_in_s)
                    continue
                names = (m.model, m.model.removesuffix(":latest"))
                tiers = tuple(t for t in Tier if self._s.tier(t).backend is BackendKind.OLLAMA
                              and self._s.tier(t).model in names)
                by_key[key] = ResidentInfo(
                    key=key, name=m.model, kind=ResidentKind.LLM, tiers=tiers,
                    state=ResidentState.RESIDENT, policy=Residency.ON_DEMAND,
                    pinned=m.expires_in_s is None, estimate_mb=0.0, charged_mb=0.0,
                    anon_mb=None, file_mb=None, loaded_at=None, idle_s=None,
                    expires_in_s=m.expires_in_s, in_use=0, external=True,
                    detail=f"loaded in Ollama at {host} (not by SARAi); {note}",
                )
        return list(by_key.values())

    def close(self) -> None:
        """Unload this registry's models (everything, when it owns the manager)."""
        self._warm.shutdown(wait=False, cancel_futures=True)
        if self._owns_manager:
            self.residency.close()
            return
        for tier in Tier:
            with contextlib.suppress(ModelError):
                self.unload(tier, force=True)
