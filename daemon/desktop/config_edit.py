"""Changing a few keys of the user's configuration file from the desktop (the tray's menus).

The file is rewritten with the keys set (PyYAML keeps no comments; the previous file is
kept as `<file>.bak`), and the result must load, or the old file comes back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from sarai.daemon.config import ConfigError, load_config


def set_keys(config_file: Path, values: dict[tuple[str, ...], Any]) -> None:
    """Set each key path (("notify", "transcripts"): True) in `config_file`; ConfigError
    (with the file left as it was) if the file cannot be read or the result is invalid."""
    data: dict[str, Any] = {}
    backup: Path | None = None
    if config_file.is_file():
        try:
            loaded = yaml.safe_load(config_file.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot update {config_file}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"cannot update {config_file}: it is not a mapping of keys")
        data = loaded or {}
        backup = config_file.with_name(config_file.name + ".bak")
        shutil.copy2(config_file, backup)
    for keys, value in values.items():
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"cannot update {config_file}: '{key}' is not a mapping")
            node = child
        node[keys[-1]] = value
    config_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=config_file.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(data, out, sort_keys=False, allow_unicode=True)
    os.replace(tmp, config_file)
    try:
        load_config(config_file, required=True)
    except ConfigError:
        if backup is not None:
            os.replace(backup, config_file)
        else:
            config_file.unlink(missing_ok=True)
        raise
