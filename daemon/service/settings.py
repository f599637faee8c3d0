"""Settings for the background process (`sarai run`): control socket, restarts, logs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DaemonSettings(BaseModel):
    """Built once from the `daemon:` section of the config and passed to the daemon."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_request_kib: int = Field(
        64, ge=1, le=16_384, description="longest request line the control socket accepts"
    )
    restart_backoff_s: float = Field(
        1.0, gt=0, description="first wait before restarting a part that failed"
    )
    restart_backoff_max_s: float = Field(60.0, gt=0, description="longest wait between restarts")
    stop_timeout_s: float = Field(
        5.0, gt=0, le=60, description="how long a clean shutdown may take"
    )
    turn_log: bool = Field(True, description="append every turn to turns.jsonl in the state dir")
    log_file: bool = Field(True, description="also write daemon.log in the state dir")
    history_size: int = Field(50, ge=1, le=10_000, description="turns `history` can return")
