"""The multimodal projector's residency: loaded for the first multimodal turn, kept a while.

The seeds' "Low-VRAM mode": a Qwen2.5-Omni mmproj (1.5–2.6 GB) is only in memory while it is
needed. It is loaded on the first turn with audio or images, kept for `keep_s` seconds after
the last one (0 = unloaded as soon as the turn's prompt is encoded) and then freed. libmtmd
reads the projector's weights into allocated buffers (no mmap), so loading shows up in the
process's RSS and unloading gives it back; glibc keeps freed blocks of this size in its heap,
so after freeing we ask it to return them (`malloc_trim`).

`info()` is what `sarai models ps` and the RAM budget read; `on_change` tells a listener (the
residency manager) when the projector is loaded or freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil

from models.errors import ModelError

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class ProjectorState(StrEnum):
    UNLOADED = "unloaded"
    LOADED = "loaded"


@dataclass(frozen=True)
class ProjectorInfo:
    """A snapshot of the projector for `models ps` and the RAM budget."""

    path: Path
    state: ProjectorState
    file_mb: float  # size on disk, what a budget reserves before loading
    rss_mb: float | None  # RSS growth measured when it was last loaded
    keep_s: float
    idle_s: float | None  # seconds since the last multimodal turn, while loaded
    audio: bool | None  # what it can encode (known once loaded)
    vision: bool | None


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc only; elsewhere a no-op)."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / MIB


class Projector:
    """One mmproj file bound to one loaded text model; thread-safe."""

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
        self._ctx: int | None = None
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
                self._load()
            self._users += 1
            assert self._ctx is not None
            return self._ctx

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
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_free(self._ctx)
            self._ctx = None
            _trim_heap()
            log.info("projector %s unloaded", self.path.name)
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

    def _load(self) -> None:
        from llama_cpp import mtmd_cpp

        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = self._threads
        # A warm-up encode would only move the cost of the first turn to load time.
        params.warmup = False
        _trim_heap()
        before = _rss_mb()
        t = time.perf_counter()
        ctx = mtmd_cpp.mtmd_init_from_file(str(self.path).encode(), self._text_model(), params)
        if not ctx:
            raise ModelError(f"cannot load projector {self.path.name} for this model")
        self._ctx = ctx
        self._caps = (bool(mtmd_cpp.mtmd_support_audio(ctx)),
                      bool(mtmd_cpp.mtmd_support_vision(ctx)))
        self._rss_mb = round(_rss_mb() - before, 1)
        log.info("projector %s loaded in %.1f s (+%.0f MB RSS)", self.path.name,
                 time.perf_counter() - t, self._rss_mb)
        self._notify()

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
