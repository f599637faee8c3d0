"""The daemon's view of model residency: a per-tier snapshot, load / unload / pin by tier, and
a `residency` event whenever what is resident changes.

The residency manager behind ModelRegistry does the real work (the RAM budget, eviction, never
unloading a model mid-reply); this adapter is the one place the daemon, the control API and
the tray touch it, and turns its snapshots into plain JSON-ready data.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sarai.models import memory
from sarai.models.errors import ModelError
from sarai.models.registry import ModelRegistry
from sarai.models.resident import ResidencyEvent, ResidentInfo, ResidentKind, ResidentState
from sarai.models.settings import Residency, Tier

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
    size_mb: float | None = None  # what it counts against the budget (or its file, if unloaded)


@dataclass(frozen=True)
class ResidencyView:
    """A snapshot for `models ps`, `status`, the tray and the `residency` event."""

    tiers: tuple[TierView, ...]
    residents: tuple[ResidentInfo, ...]  # all on the budget: projectors, ASR, TTS too
    used_mb: float  # charged against the budget
    budget_mb: float
    process_mb: float  # resident memory of the whole daemon

    def as_dict(self) -> dict[str, Any]:
        return {
            "models": [asdict(t) for t in self.tiers],
            "resident": [r.as_dict() for r in self.residents],
            "ram": {"used_mb": round(self.used_mb), "budget_mb": round(self.budget_mb),
                    "process_mb": round(self.process_mb)},
        }


class DaemonResidency:
    """Snapshots and tier actions over the registry; announces changes on its own thread."""

    def __init__(self, registry: ModelRegistry,
                 on_change: Callable[[ResidencyView], None]) -> None:
        self.registry = registry
        self._on_change = on_change
        # Listeners are told from whichever thread changed residency, possibly holding its
        # locks; the snapshot is taken here, on a thread of our own, instead.
        self._changes: queue.Queue[bool] = queue.Queue()
        self._unsubscribe = registry.subscribe(self._heard)
        self._thread = threading.Thread(target=self._announce, name="residency-events",
                                        daemon=True)
        self._thread.start()

    # --- what is resident -------------------------------------------------------------

    def snapshot(self) -> ResidencyView:
        reg = self.registry
        residents = tuple(reg.resident(include_ollama=False))
        views = []
        for tier in Tier:
            # The tier's language model; its projector, if loaded, is a resident of its own.
            info = next((i for i in residents if tier in i.tiers and i.kind is ResidentKind.LLM
                         and i.state is ResidentState.RESIDENT), None)
            policy_pinned = reg.settings(tier).residency is Residency.PINNED
            try:
                r = reg.resolve(tier)
            except ModelError as exc:
                views.append(TierView(tier.value, f"unavailable: {exc}", "-", False, False,
                                      policy_pinned))
                continue
            if info is not None:
                size: float | None = info.charged_mb
            else:
                size = r.path.stat().st_size / MIB if r.path and r.path.is_file() else None
            views.append(TierView(
                tier.value, r.model, r.backend, r.starter, info is not None,
                info.pinned if info is not None else policy_pinned,
                round(size, 1) if size else None,
            ))
        used = sum(i.charged_mb for i in residents)
        return ResidencyView(tuple(views), residents, used, reg.residency.budget_mb,
                             memory.sample().total_mb)

    # --- changing it ------------------------------------------------------------------

    def load(self, tier: Tier, *, long_context: bool = False) -> ResidencyView:
        """Load the tier's model within the budget; ModelError (with the reason) if it won't."""
        self.registry.load(tier, long_context=long_context)
        return self.snapshot()

    def unload(self, tier: Tier, *, force: bool = False) -> ResidencyView:
        """Unload the tier's model once its reply in progress (if any) is over; a pinned model
        stays unless `force` (ModelError says so)."""
        self.registry.unload(tier, force=force)
        return self.snapshot()

    def pin(self, tier: Tier, on: bool = True) -> ResidencyView:
        """Pin (loading it first) or unpin the tier's model, for as long as the daemon runs."""
        self.registry.pin(tier, on)
        return self.snapshot()

    def close(self) -> None:
        """Unload everything (replies still running get a few seconds to finish)."""
        self._unsubscribe()
        self.registry.close()
        self._changes.put(False)

    # --- announcing changes -----------------------------------------------------------

    def _heard(self, event: ResidencyEvent) -> None:
        log.debug("residency: %s %s %s", event.kind, event.name, event.reason)
        self._changes.put(True)

    def _announce(self) -> None:
        while self._changes.get():
            while True:  # a burst of changes (evict + load) becomes one snapshot
                try:
                    if not self._changes.get_nowait():
                        return
                except queue.Empty:
                    break
            try:
                self._on_change(self.snapshot())
            except Exception:  # announcing must never stop; the next change retries
                log.exception("cannot announce a residency change")
