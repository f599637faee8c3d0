"""Where SARAi keeps things, following the XDG base directory spec."""

from __future__ import annotations

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
