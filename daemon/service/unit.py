"""Installing SARAi as a systemd user service, with the tray started at login.

The unit and the autostart entry are the files in the repository's `systemd/` folder; the
copies installed into ~/.config get their command lines pointed at the `sarai` that ran the
install, because a user service does not see the PATH of an interactive shell.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sarai.daemon.config import ConfigError

TEMPLATES = Path(__file__).resolve().parents[2] / "systemd"
UNIT_NAME = "sarai.service"
DESKTOP_NAME = "sarai-tray.desktop"


class ServiceError(ConfigError):
    """The service files could not be installed or removed; str() says why."""


@dataclass(frozen=True)
class ServicePaths:
    unit: Path
    desktop: Path

    @classmethod
    def from_env(cls) -> ServicePaths:
        value = os.environ.get("XDG_CONFIG_HOME")
        config = Path(value) if value else Path.home() / ".config"
        return cls(config / "systemd" / "user" / UNIT_NAME, config / "autostart" / DESKTOP_NAME)


def sarai_command() -> str:
    """The absolute command that runs this installation's `sarai`."""
    exe = Path(sys.executable).with_name("sarai")
    if exe.is_file() and os.access(exe, os.X_OK):
        return str(exe)
    return f"{sys.executable} -m sarai.daemon.cli"


def _template(name: str) -> str:
    path = TEMPLATES / name
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise ServiceError(f"cannot read the template {path}: {exc}") from exc


def render_unit(command: str, config: Path | None = None) -> str:
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={command} run", _template(UNIT_NAME))
    if config is not None:
        env = f"Environment=SARAI_CONFIG={config.expanduser().resolve()}"
        text = re.sub(r"(?m)^(Environment=PYTHONUNBUFFERED=1)$", rf"\1\n{env}", text)
    return text


def render_desktop(command: str, config: Path | None = None) -> str:
    # The tray hosts the push-to-talk key and edits the configuration file, so it must use
    # the same file as the service.
    option = f" --config {config.expanduser().resolve()}" if config is not None else ""
    return re.sub(r"(?m)^Exec=.*$", f"Exec={command}{option} tray", _template(DESKTOP_NAME))


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    except OSError as exc:
        raise ServiceError(f"cannot write {path}: {exc}") from exc


def systemctl(*args: str) -> tuple[bool, str]:
    """Run `systemctl --user ARGS`; (succeeded, what it printed)."""
    if shutil.which("systemctl") is None:
        return False, "systemctl is not installed"
    try:
        p = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


def install(paths: ServicePaths, *, config: Path | None = None, now: bool = False
            ) -> list[str]:
    """Write the unit and the autostart entry; lines telling the user what happened.

    With `now`, also enable and start the service; ServiceError (after the files are
    written, its message saying so) if it could not be started."""
    command = sarai_command()
    _write(paths.unit, render_unit(command, config))
    _write(paths.desktop, render_desktop(command, config))
    lines = [f"installed {paths.unit}", f"installed {paths.desktop} (the tray starts at login)"]
    ok, out = systemctl("daemon-reload")
    if not ok:
        why = out.splitlines()[-1] if out else "?"
        if now:
            raise ServiceError(
                "\n".join(lines) + f"\nSARAi was not started: the systemd user manager is not "
                f"reachable ({why}); in your desktop session run "
                "'systemctl --user daemon-reload && systemctl --user enable --now sarai'")
        lines.append(f"systemd user manager not reachable ({why})"
                     "; run 'systemctl --user daemon-reload' in your session")
    elif now:
        ok, out = systemctl("enable", "--now", UNIT_NAME)
        if not ok:
            raise ServiceError("\n".join(lines) + f"\nSARAi was not started: {out or '?'} "
                               "(see 'journalctl --user -u sarai')")
        lines.append("enabled and started sarai.service")
    else:
        lines.append("start it now and at every login: systemctl --user enable --now sarai")
    return lines


def uninstall(paths: ServicePaths) -> list[str]:
    lines = []
    if paths.unit.exists():
        ok, _ = systemctl("disable", "--now", UNIT_NAME)
        if ok:
            lines.append("stopped and disabled sarai.service")
    for path in (paths.unit, paths.desktop):
        if path.exists():
            try:
                path.unlink()
            except OSError as exc:
                raise ServiceError(f"cannot remove {path}: {exc}") from exc
            lines.append(f"removed {path}")
    if not lines:
        lines.append("nothing to remove: the service is not installed")
    systemctl("daemon-reload")
    return lines


def status(paths: ServicePaths) -> dict[str, object]:
    """Installed files and what the user manager says (None where it cannot be asked)."""
    info: dict[str, object] = {
        "unit": str(paths.unit), "unit_installed": paths.unit.is_file(),
        "autostart": str(paths.desktop), "autostart_installed": paths.desktop.is_file(),
        "enabled": None, "active": None,
    }
    reachable, _ = systemctl("show-environment")
    if reachable:
        info["enabled"] = systemctl("is-enabled", UNIT_NAME)[1] or None
        info["active"] = systemctl("is-active", UNIT_NAME)[1] or None
    return info
