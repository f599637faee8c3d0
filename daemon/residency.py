"""Which models are resident, and loading / unloading / pinning them by tier from the daemon.

This is the one place the daemon touches model residency, so that a richer residency manager
can replace the plain ModelRegistry behind it without the control API or the tray changing.

It also keeps unloading safe: the Assistant gets a registry whose backends count the replies
they are streaming, and a model is only closed once none is (llama.cpp would crash if its
memory went away mid-reply). One reply at a time runs on each loaded model for the same
reason: a llama.cpp context is not thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from models.backend import ChatBackend, Message
from models.errors import ModelError, ModelUnavailable
from models.registry import ModelRegistry
from models.settings import Residency, Tier

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class TierView:
    tier: str
    model: str
    backend: str
    starter: bool
    resident: bool
    pinned: bool
    size_mb: float | None = None


@dataclass(frozen=True)
class ResidencyView:
    """A snapshot for `models ps`, the tray and the `residency` event."""

    tiers: tuple[TierView, ...]
    used_mb: float  # resident memory of the whole daemon (models, ASR, TTS, Python)
    models_mb: float  # what the resident model files weigh, each shared file counted once
    budget_mb: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "models": [asdict(t) for t in self.tiers],
            "ram": {"used_mb": round(self.used_mb), "models_mb": round(self.models_mb),
                    "budget_mb": round(self.budget_mb) if self.budget_mb else None},
        }


class _GuardedBackend:
    """A loaded backend that knows how many replies it is streaming, and can be retired."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self._cond = threading.Condition()
        self._one_at_a_time = threading.Lock()
        self._users = 0
        self._retired = False
        self._abort = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stream(self, messages: Sequence[Message], **kw: Any) -> Iterator[str]:
        with self._cond:
            if self._retired:
                raise ModelUnavailable(f"{self.name} was unloaded")
            self._users += 1
        try:
            with self._one_at_a_time:
                chunks = self.inner.stream(messages, **kw)
                try:
                    for chunk in chunks:
                        if self._abort.is_set():
                            break  # shutting down: the reply ends here
                        yield chunk
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    def retire(self, timeout: float, *, abort: bool = False) -> bool:
        """Refuse new replies and wait for running ones (cut short with `abort`); False, and
        still usable, if one is still running after `timeout`."""
        with self._cond:
            self._retired = True
            if abort:
                self._abort.set()
            if self._cond.wait_for(lambda: self._users == 0, timeout):
                return True
            self._retired = False
            self._abort.clear()
            return False

    def close(self) -> None:
        self.inner.close()


class _GuardedRegistry:
    """The registry the Assistant uses: the real one, with every backend guarded."""

    def __init__(self, inner: ModelRegistry, on_load: Callable[[], None]) -> None:
        self._inner = inner
        self._on_load = on_load
        self._guards: dict[tuple, _GuardedBackend] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def backend(self, tier: Tier) -> ChatBackend:
        was_loaded = self._inner.is_loaded(tier)
        raw = self._inner.backend(tier)
        key = self._inner.resolve(tier).key
        with self._lock:
            guard = self._guards.get(key)
            if guard is None or guard.inner is not raw:
                guard = self._guards[key] = _GuardedBackend(raw)
        if not was_loaded:
            self._on_load()
        return guard  # type: ignore[return-value]

    def guard(self, key: tuple) -> _GuardedBackend | None:
        with self._lock:
            return self._guards.get(key)

    def forget_guard(self, key: tuple) -> None:
        with self._lock:
            self._guards.pop(key, None)


class RegistryResidency:
    """Residency on top of ModelRegistry: snapshot, load, unload, pin, close."""

    def __init__(self, registry: ModelRegistry, on_change: Callable[[ResidencyView], None],
                 budget_mb: float | None = None) -> None:
        self._inner = registry
        self._on_change = on_change
        self._budget_mb = budget_mb
        self.registry = _GuardedRegistry(registry, self._changed)
        self._pinned = {t for t in Tier if registry.settings(t).residency is Residency.PINNED}
        self._lock = threading.RLock()

    # --- what is resident -------------------------------------------------------------

    def snapshot(self) -> ResidencyView:
        views, seen, models_mb = [], set(), 0.0
        for tier in Tier:
            try:
                r = self._inner.resolve(tier)
            except ModelError as exc:
                views.append(TierView(tier.value, f"unavailable: {exc}", "-", False, False,
                                      tier in self._pinned))
                continue
            size = r.path.stat().st_size / MIB if r.path and r.path.is_file() else None
            resident = self._inner.is_loaded(tier)
            if resident and size and r.key not in seen:
                models_mb += size
                seen.add(r.key)
            views.append(TierView(tier.value, r.model, r.backend, r.starter, resident,
                                  tier in self._pinned, round(size, 1) if size else None))
        used = psutil.Process().memory_info().rss / MIB
        return ResidencyView(tuple(views), used, models_mb, self._budget_mb)

    def is_pinned(self, tier: Tier) -> bool:
        return tier in self._pinned

    # --- changing it ------------------------------------------------------------------

    def load(self, tier: Tier) -> ResidencyView:
        with self._lock:
            self.registry.backend(tier)  # announces the change itself
            return self.snapshot()

    def unload(self, tier: Tier, wait_s: float = 30.0) -> ResidencyView:
        """Unload the model serving `tier` once its running reply (if any) has finished."""
        with self._lock:
            key = self._inner.resolve(tier).key
            sharing = [t for t in Tier if t in self._pinned and self._inner.resolve(t).key == key]
            if sharing:
                who = "it is pinned" if tier in sharing else f"pinned {sharing[0]} uses it too"
                raise ModelUnavailable(f"cannot unload {tier}: {who}; unpin it first")
            if not self._inner.is_loaded(tier):
                return self.snapshot()
            guard = self.registry.guard(key)
            if guard is not None and not guard.retire(wait_s):
                raise ModelUnavailable(f"cannot unload {tier}: a reply is still being generated")
            backend = self._take_loaded(key)
            self.registry.forget_guard(key)
            if backend is not None:
                log.info("unloading %s (%s)", self._inner.resolve(tier).model, tier)
                backend.close()
            view = self.snapshot()
        self._on_change(view)
        return view

    def pin(self, tier: Tier, on: bool = True) -> ResidencyView:
        """Pinned tiers are loaded now and never unloaded."""
        with self._lock:
            if on:
                self.registry.backend(tier)
                self._pinned.add(tier)
            else:
                self._pinned.discard(tier)
            view = self.snapshot()
        self._on_change(view)
        return view

    def close(self, wait_s: float) -> bool:
        """Unload everything, cutting running replies short; False if one did not stop within
        `wait_s` (its model is then left for the process exit to free)."""
        with self._lock:
            for tier in Tier:
                try:
                    key = self._inner.resolve(tier).key
                except ModelError:
                    continue
                guard = self.registry.guard(key)
                if guard is not None and not guard.retire(wait_s, abort=True):
                    log.warning("a reply is still being generated; not unloading %s", tier)
                    return False
            self._inner.close()
        self._on_change(self.snapshot())
        return True

    def _take_loaded(self, key: tuple) -> ChatBackend | None:
        # ModelRegistry has no per-model unload yet; this is the single place that reaches
        # into it, to be replaced by the residency manager's own unload.
        with self._inner._lock:
            return self._inner._loaded.pop(key, None)

    def _changed(self) -> None:
        self._on_change(self.snapshot())
