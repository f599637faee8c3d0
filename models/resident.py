"""The vocabulary of residency: what a resident is, costs and reports, and what listeners hear.

Small frozen types, so snapshots can cross threads (the tray, the control socket, events).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from sarai.models.settings import Residency, Tier


class ResidentKind(StrEnum):
    LLM = "llm"
    MMPROJ = "mmproj"
    ASR = "asr"
    TTS = "tts"


class ResidentState(StrEnum):
    LOADING = "loading"
    RESIDENT = "resident"
    UNLOADING = "unloading"


class EventKind(StrEnum):
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADED = "unloaded"
    REFUSED = "refused"
    FAILED = "failed"
    POLICY = "policy"  # pinned or unpinned


@dataclass(frozen=True)
class Cost:
    """What a resident is expected to take, split so mmap'd weights shared by two contexts of
    one file are charged once."""

    weights_mb: float = 0.0
    extra_mb: float = 0.0  # KV cache, compute buffers, projector
    weights_file: str | None = None  # set when the weights are mmap'd (shared page cache)

    @property
    def total_mb(self) -> float:
        return self.weights_mb + self.extra_mb


@dataclass(frozen=True)
class ResidentInfo:
    """A snapshot of one resident, safe to hand to other threads."""

    key: str
    name: str
    kind: ResidentKind
    tiers: tuple[Tier, ...]
    state: ResidentState
    policy: Residency
    pinned: bool
    estimate_mb: float
    charged_mb: float  # what it counts against the budget now
    anon_mb: float | None  # measured at load: anonymous RSS it added
    file_mb: float | None  # measured at load: file-backed RSS it added (mmap'd weights)
    loaded_at: float | None  # wall-clock seconds
    idle_s: float | None
    expires_in_s: float | None  # ttl residents only
    in_use: int
    external: bool  # memory held by another process (an Ollama server)
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready values (for `models ps --json`, the control socket, events)."""
        d = asdict(self)
        d["tiers"] = [str(t) for t in self.tiers]
        for k in ("kind", "state", "policy"):
            d[k] = str(d[k])
        return d


@dataclass(frozen=True)
class ResidencyEvent:
    kind: EventKind
    key: str
    name: str
    tiers: tuple[Tier, ...]
    reason: str = ""
    info: ResidentInfo | None = None


@dataclass(frozen=True)
class Admission:
    """Whether a load fits the budget now, and what it would evict."""

    ok: bool
    reason: str
    need_mb: float
    free_mb: float
    evicts: tuple[str, ...] = ()
    resident: bool = False


Listener = Callable[[ResidencyEvent], None]
