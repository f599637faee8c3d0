"""Writing a tier's model into the user's configuration file (after `pull`, or `pin --save`).

Only the named keys under `models.<tier>` change; everything else in the file is kept. The
old file is kept as `<file>.bak`, and the caller validates the result and can `restore`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from sarai.models.errors import ModelError
from sarai.models.settings import Tier


def bind_tier(config_file: Path, tier: Tier, values: dict[str, Any]) -> Path | None:
    """Set `models.<tier>.<key>` for each item; returns the backup path (None if new file).

    PyYAML does not keep comments, so a commented file loses them; the backup keeps the
    original.
    """
    data: dict[str, Any] = {}
    backup: Path | None = None
    if config_file.is_file():
        try:
            loaded = yaml.safe_load(config_file.read_text("utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ModelError(f"cannot update {config_file}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ModelError(f"cannot update {config_file}: it is not a mapping of keys")
        data = loaded or {}
        backup = config_file.with_name(config_file.name + ".bak")
        shutil.copy2(config_file, backup)
    models = data.setdefault("models", {})
    if not isinstance(models, dict):
        raise ModelError(f"cannot update {config_file}: 'models' is not a mapping")
    section = models.setdefault(tier.value, {})
    if not isinstance(section, dict):
        raise ModelError(f"cannot update {config_file}: 'models.{tier}' is not a mapping")
    section.update(values)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=config_file.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(data, out, sort_keys=False, allow_unicode=True)
    os.replace(tmp, config_file)
    return backup


def restore(config_file: Path, backup: Path | None) -> None:
    """Undo `bind_tier`: put the backup back, or remove a file it created."""
    if backup is not None and backup.is_file():
        os.replace(backup, config_file)
    else:
        config_file.unlink(missing_ok=True)
