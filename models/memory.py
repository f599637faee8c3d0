"""What this process really holds in RAM, read from /proc (Linux).

mmap'd model weights show up as file-backed RSS and weights read into malloc'd buffers as
anonymous RSS, so the two are reported apart: both count against the budget, but only the
file-backed part is shared with the page cache and other processes mapping the same file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class MemorySample:
    """Resident memory of this process in MiB."""

    anon_mb: float
    file_mb: float
    shmem_mb: float = 0.0
    peak_mb: float = 0.0  # VmHWM: the high-water mark since start or the last reset

    @property
    def total_mb(self) -> float:
        return self.anon_mb + self.file_mb + self.shmem_mb

    def minus(self, before: MemorySample) -> MemorySample:
        """What changed since `before` (negative numbers are clamped to zero)."""
        return MemorySample(
            max(0.0, self.anon_mb - before.anon_mb),
            max(0.0, self.file_mb - before.file_mb),
            max(0.0, self.shmem_mb - before.shmem_mb),
        )


def _kib_fields(path: Path, names: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in names:
                out[key] = int(value.split()[0]) / 1024.0
    except (OSError, ValueError, IndexError) as exc:
        log.debug("cannot read %s: %s", path, exc)
    return out


def sample() -> MemorySample:
    """This process's resident memory right now."""
    f = _kib_fields(_STATUS, {"RssAnon", "RssFile", "RssShmem", "VmHWM"})
    return MemorySample(
        f.get("RssAnon", 0.0), f.get("RssFile", 0.0), f.get("RssShmem", 0.0), f.get("VmHWM", 0.0)
    )


def available_mb() -> float | None:
    """MemAvailable from /proc/meminfo: what the kernel could hand out without swapping."""
    return _kib_fields(_MEMINFO, {"MemAvailable"}).get("MemAvailable")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a later sample's peak is local."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


_libc: ctypes.CDLL | None = None


def release_freed() -> None:
    """Hand memory that was freed back to the kernel, so unloading shows up in RSS.

    glibc keeps freed heap pages for reuse; without malloc_trim a model's buffers can stay
    counted in RssAnon long after the model is gone. Objects in reference cycles are freed
    only by a full collection, which Python runs rarely in a long-lived process: each
    microphone stream the voice loop replaces is one (sounddevice's callback refers back to
    its stream), and between collections a daemon held 10-16 MB more after 10 turns.
    """
    gc.collect()
    trim()


def settle() -> None:
    """Once a long-running process has loaded what it keeps: collect what starting up left
    behind, and leave the rest out of later collections (`gc.freeze`), so that the full
    collection after every turn (`release_freed`) looks only at what came since: ~0 ms
    instead of 25-30 ms over the ~100,000 objects the models' libraries create."""
    gc.collect()
    gc.freeze()


# glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
LONG_RUNNING_ARENAS = 2
LONG_RUNNING_MMAP_THRESHOLD = 16 * 1024 * 1024


def for_a_long_run() -> bool:
    """Set glibc's allocator up for a process that runs for days with many threads.

    By default every thread that allocates may get an arena of its own (up to eight per
    core), and after a large block is freed glibc raises the size from which blocks are
    mmap'd up to 32 MB, so the audio and decoding buffers of each turn are carved from
    those arenas. What is freed there is not handed back when small blocks still sit
    around it, so the daemon's resident memory grew turn after turn while the memory in
    use stayed flat (a soak: 95 → 330 MB resident in the arenas over 60 spoken turns,
    35 MB more in use). Here: two arenas, and blocks of 16 MB or more always mmap'd (and so
    returned when freed).

    Not smaller blocks: each mmap'd block is fresh pages the kernel must fault in and zero,
    and a turn's recognition allocates and frees hundreds of buffers between 128 KB and
    16 MB. Mapped from 128 KB, a Spanish turn's recognition took ~88,000 page faults (from
    16 MB: ~12,000) and ~40 % more CPU; an English one ~38,000 (none) and ~60 % more CPU.
    Returns False where the allocator is not glibc's."""
    lib = _lib()
    if lib is None or not hasattr(lib, "mallopt"):
        return False
    ok = lib.mallopt(_M_ARENA_MAX, LONG_RUNNING_ARENAS) == 1
    return lib.mallopt(_M_MMAP_THRESHOLD, LONG_RUNNING_MMAP_THRESHOLD) == 1 and ok


def _lib() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            return None
    return _libc


def trim() -> None:
    """Return the heap's free pages to the kernel (glibc's malloc_trim); a no-op elsewhere."""
    lib = _lib()
    try:
        if lib is not None:
            lib.malloc_trim(0)
    except AttributeError:  # not glibc: nothing to trim
        pass
