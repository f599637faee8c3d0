"""Checking the configured microphone and speaker names before anything slow starts."""

from __future__ import annotations

from pathlib import Path

from sarai.audio.device_names import UnknownDevice, find, list_devices
from sarai.audio.settings import AudioSettings
from sarai.daemon.config import ConfigError, line_of


def check_devices(audio: AudioSettings, config_file: Path | None) -> None:
    """ConfigError naming the file, line and key (and what exists) when a configured device
    name matches no microphone or speaker here. Unset devices (the defaults) always pass."""
    wanted = {"input": audio.input_device, "output": audio.output_device}
    if all(v is None for v in wanted.values()):
        return
    devices = list_devices()
    for kind, value in wanted.items():
        try:
            find(value, kind, devices)  # type: ignore[arg-type]
        except UnknownDevice as exc:
            key = f"{kind}_device"
            where = line_of(config_file, "audio", key) if config_file is not None and \
                config_file.is_file() else "configuration"
            raise ConfigError(f"{where}: audio.{key}: {exc}") from exc
