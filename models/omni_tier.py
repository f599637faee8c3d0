"""A tier's projector as a resident of the RAM budget, and what media a tier can take now.

The registry builds an `OmniBackend` for every llama.cpp tier with an `mmproj`; its projector
is a `ResidentProjector`: loaded through the residency manager on the first multimodal
prompt (admitted, or refused with the reason, like any other resident), charged with the RSS
its load really added, shown as its own line in `sarai models ps`, and freed `keep_s`
seconds after its last prompt (0: as soon as the prompt is encoded). It belongs to its text
model's resident, so unloading or evicting that model frees the projector first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from sarai.models.attachments import MediaKind
from sarai.models.errors import ModelError
from sarai.models.ggufinfo import read_info
from sarai.models.memory import MIB
from sarai.models.projector import MtmdContext, ProjectorInfo, ProjectorState
from sarai.models.residency import ResidencyManager
from sarai.models.resident import Cost, ResidentKind, ResidentState
from sarai.models.settings import Residency, Tier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaSupport:
    """What a tier's model can take directly right now; `why_not` says why it takes less."""

    kinds: frozenset[MediaKind]
    why_not: str | None = None


def projector_kinds(path: Path) -> frozenset[MediaKind]:
    """What an mmproj file can encode, from its GGUF header (both when the header is silent)."""
    meta = read_info(path).meta
    audio = meta.get("clip.has_audio_encoder")
    vision = meta.get("clip.has_vision_encoder")
    if audio is None and vision is None:
        return frozenset({MediaKind.AUDIO, MediaKind.IMAGE})
    kinds = set()
    if audio:
        kinds.add(MediaKind.AUDIO)
    if vision:
        kinds.add(MediaKind.IMAGE)
    return frozenset(kinds)


def projector_cost(path: Path) -> Cost:
    """What the budget reserves before loading: libmtmd reads the whole file into RAM."""
    return Cost(extra_mb=path.stat().st_size / MIB)


class ResidentProjector:
    """One tier's projector, kept by the residency manager under `key`."""

    def __init__(
        self,
        manager: ResidencyManager,
        key: str,
        path: Path,
        text_model: Callable[[], object],  # the llama_model pointer, read when loading
        *,
        parent: str,
        tier: Tier,
        threads: int,
        keep_s: float,
    ) -> None:
        self.path = path
        self.key = key
        self.keep_s = keep_s
        self._manager = manager
        self._text_model = text_model
        self._parent = parent
        self._tier = tier
        self._threads = threads
        self._rss_mb: float | None = None

    def acquire(self) -> int:
        """The loaded context, loaded within the budget if needed (ModelUnavailable with the
        reason when it does not fit); pair with `release()`."""
        if not self.path.is_file():
            raise ModelError(f"projector file not found: {self.path}")
        ctx: MtmdContext = self._manager.acquire(
            self.key, self._load, name=self.path.name, cost=lambda: projector_cost(self.path),
            tier=self._tier, kind=ResidentKind.MMPROJ,
            policy=Residency.TTL if self.keep_s > 0 else Residency.ON_DEMAND,
            ttl_s=self.keep_s if self.keep_s > 0 else None,
            closer=lambda c: c.free(), parent=self._parent, use=True,
            detail=f"projector, kept {self.keep_s:g} s after a media turn",
        )
        assert ctx.handle is not None
        return ctx.handle

    def release(self) -> None:
        """The prompt is encoded: idle from now, and freed at once when keep_s is 0."""
        self._manager.release(self.key)
        if self.keep_s <= 0:
            # Another prompt using it right now frees it when that one is done.
            with suppress(ModelError):
                self._manager.unload(self.key, reason="not kept after the turn (mmproj_keep_s 0)",
                                     wait_s=0.0)

    def close(self) -> None:
        """Free it now, whatever keep_s says."""
        with suppress(ModelError):
            self._manager.unload(self.key, force=True, reason="its text model is closing")

    @property
    def loaded(self) -> bool:
        return self._manager.state(self.key) is ResidentState.RESIDENT

    def info(self) -> ProjectorInfo:
        res = self._manager.info(self.key)
        kinds = projector_kinds(self.path) if self.path.is_file() else frozenset()
        loaded = res is not None and res.state is ResidentState.RESIDENT
        return ProjectorInfo(
            self.path, ProjectorState.LOADED if loaded else ProjectorState.UNLOADED,
            round(self.path.stat().st_size / MIB, 1) if self.path.is_file() else 0.0,
            self._rss_mb, self.keep_s, res.idle_s if res is not None else None,
            MediaKind.AUDIO in kinds, MediaKind.IMAGE in kinds,
        )

    def _load(self) -> MtmdContext:
        ctx = MtmdContext(self.path, self._text_model(), threads=self._threads)
        self._rss_mb = ctx.rss_mb
        return ctx
