"""Where SARAi keeps things, following the XDG base directory spec.

What SARAi writes about its user (the daemon log and turn log hold transcripts, benchmark
results hold what was heard, the router's cache what it learned) is for that user only:
such files are 0600 in 0700 folders, whatever the umask, and looser ones left by an older
version are tightened when they are next written.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


@dataclass(frozen=True)
class Paths:
    config_file: Path
    data_dir: Path
    state_dir: Path
    runtime_dir: Path

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def bench_dir(self) -> Path:
        return self.state_dir / "bench"

    @classmethod
    def from_env(cls) -> Paths:
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/sarai-{os.getuid()}"
        config = os.environ.get("SARAI_CONFIG")
        default_config = _xdg("XDG_CONFIG_HOME", ".config") / "sarai" / "config.yaml"
        return cls(
            config_file=Path(config) if config else default_config,
            data_dir=_xdg("XDG_DATA_HOME", ".local/share") / "sarai",
            state_dir=_xdg("XDG_STATE_HOME", ".local/state") / "sarai",
            runtime_dir=Path(runtime) / "sarai",
        )


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner can use: created 0700 (and so are any missing
    parents), or tightened to 0700 when it is ours and looser. Returns `path`."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=PRIVATE_DIR)
    _tighten(path, PRIVATE_DIR)
    return path


def open_private(path: Path, flags: int) -> int:
    """os.open() of a file that only its owner may read: created 0600, tightened if looser."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (created or replaced) as an owner-only file."""
    private_dir(path.parent)
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _tighten(path: Path, mode: int) -> None:
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, mode)
