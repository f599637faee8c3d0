"""The multimodal projector (mmproj): a loaded libmtmd context, and when it is in memory.

The seeds' "Low-VRAM mode": a Qwen2.5-Omni mmproj (1.5–2.6 GB) is only in memory while it is
needed. It is loaded on the first turn with audio or images, kept for `keep_s` seconds after
the last one (0 = freed as soon as the turn's prompt is encoded) and then freed. libmtmd
reads the projector's weights into allocated buffers (no mmap), so loading shows up in the
process's RSS and freeing gives it back; glibc keeps freed blocks of this size in its heap,
so after freeing we ask it to return them (`malloc_trim`).

Two keepers share one interface (`ProjectorSource`): `Projector` times itself, for an
`OmniBackend` used on its own; the model registry's tiers use `models.omni_tier`'s
`ResidentProjector`, which makes the projector a resident of the one RAM budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import psutil

from sarai.models import memory
from sarai.models.errors import ModelError

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class ProjectorState(StrEnum):
    UNLOADED = "unloaded"
    LOADED = "loaded"


@dataclass(frozen=True)
class ProjectorInfo:
    """A snapshot of the projector."""

    path: Path
    state: ProjectorState
    file_mb: float  # size on disk, what a budget reserves before loading
    rss_mb: float | None  # RSS growth measured when it was last loaded
    keep_s: float
    idle_s: float | None  # seconds since the last multimodal turn, while loaded
    audio: bool | None  # what it can encode (None: not known yet)
    vision: bool | None


class ProjectorSource(Protocol):
    """What `OmniBackend` needs from a projector: a context for one prompt at a time."""

    path: Path

    def acquire(self) -> int:
        """The loaded mtmd context (loading it first if needed); pair with `release()`."""

    def release(self) -> None:
        """The prompt is encoded; the keeper decides when the projector is freed."""

    def info(self) -> ProjectorInfo: ...

    def close(self) -> None:
        """Free it now (the text model is about to go)."""


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / MIB


class MtmdContext:
    """One loaded mmproj bound to one loaded text model. Free it with `free()`."""

    def __init__(self, path: Path, text_model: object, *, threads: int) -> None:
        from llama_cpp import mtmd_cpp

        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = threads
        # A warm-up encode would only move the cost of the first turn to load time.
        params.warmup = False
        memory.release_freed()
        before = _rss_mb()
        t = time.perf_counter()
        ctx = mtmd_cpp.mtmd_init_from_file(str(path).encode(), text_model, params)
        if not ctx:
            raise ModelError(f"cannot load projector {path.name} for this model")
        self.path = path
        self.handle: int | None = ctx
        self.audio = bool(mtmd_cpp.mtmd_support_audio(ctx))
        self.vision = bool(mtmd_cpp.mtmd_support_vision(ctx))
        self.rss_mb = round(_rss_mb() - before, 1)
        log.info("projector %s loaded in %.1f s (+%.0f MB RSS)", path.name,
                 time.perf_counter() - t, self.rss_mb)

    def free(self) -> None:
        """Give its memory back (idempotent)."""
        if self.handle is None:
            return
        from llama_cpp import mtmd_cpp

        mtmd_cpp.mtmd_free(self.handle)
        self.handle = None
        memory.release_freed()
        log.info("projector %s unloaded", self.path.name)


class Projector:
    """A projector that keeps itself loaded for `keep_s` seconds after its last use;
    thread-safe. For an `OmniBackend` outside the model registry (which budgets its own)."""

    def __init__(
        self,
        path: Path,
        text_model: Callable[[], object],
        *,
        threads: int,
        keep_s: float,
        on_change: Callable[[ProjectorInfo], None] | None = None,
    ) -> None:
        if not path.is_file():
            raise ModelError(f"projector file not found: {path}")
        self.path = path
        self.keep_s = keep_s
        self._text_model = text_model  # the llama_model pointer, read when loading
        self._threads = threads
        self._on_change = on_change
        self._lock = threading.RLock()
        self._ctx: MtmdContext | None = None
        self._users = 0
        self._last_used: float | None = None
        self._rss_mb: float | None = None
        self._timer: threading.Timer | None = None
        self._caps: tuple[bool, bool] | None = None

    # --- use ---------------------------------------------------------------------------------

    def acquire(self) -> int:
        """The loaded mtmd context, loading it first if needed; pair with `release()`."""
        with self._lock:
            self._cancel_timer()
            if self._ctx is None:
                self._ctx = MtmdContext(self.path, self._text_model(), threads=self._threads)
                self._caps = (self._ctx.audio, self._ctx.vision)
                self._rss_mb = self._ctx.rss_mb
                self._notify()
            self._users += 1
            assert self._ctx.handle is not None
            return self._ctx.handle

    def release(self) -> None:
        """The turn is done with it: free now (keep_s 0) or after keep_s idle seconds."""
        with self._lock:
            self._users = max(0, self._users - 1)
            self._last_used = time.monotonic()
            if self._users:
                return
            if self.keep_s <= 0:
                self.unload()
            else:
                self._timer = threading.Timer(self.keep_s, self._expire)
                self._timer.daemon = True
                self._timer.start()

    def unload(self) -> bool:
        """Free the projector now unless a turn is using it; True if it was freed."""
        with self._lock:
            self._cancel_timer()
            if self._ctx is None or self._users:
                return False
            self._ctx.free()
            self._ctx = None
        self._notify()
        return True

    @property
    def loaded(self) -> bool:
        return self._ctx is not None

    def info(self) -> ProjectorInfo:
        with self._lock:
            idle = None
            if self._ctx is not None and self._last_used is not None and not self._users:
                idle = round(time.monotonic() - self._last_used, 1)
            audio, vision = self._caps if self._caps else (None, None)
            return ProjectorInfo(
                self.path,
                ProjectorState.LOADED if self._ctx is not None else ProjectorState.UNLOADED,
                round(self.path.stat().st_size / MIB, 1),
                self._rss_mb,
                self.keep_s,
                idle,
                audio,
                vision,
            )

    # --- internals ---------------------------------------------------------------------------

    def _expire(self) -> None:
        with self._lock:
            self._timer = None
        self.unload()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _notify(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self.info())
            except Exception:  # a listener's bug must not break a turn
                log.exception("projector listener failed")

    def close(self) -> None:
        """Free it regardless of keep_s (the text model is about to go)."""
        with self._lock:
            self._users = 0
        self.unload()
