"""The systemd user unit and the tray autostart entry: valid as shipped, and as installed by
`sarai service install` (into a temporary ~/.config)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from sarai.daemon.service.unit import (
    DESKTOP_NAME,
    UNIT_NAME,
    render_desktop,
    render_unit,
    sarai_command,
)

UNIT = REPO / "systemd" / UNIT_NAME
DESKTOP = REPO / "systemd" / DESKTOP_NAME


def verify(unit: Path) -> subprocess.CompletedProcess:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing; run 'make setup' (Debian package systemd)")
    runtime = tempfile.mkdtemp(prefix="sarai-sd-", dir="/tmp")
    try:
        return subprocess.run(["systemd-analyze", "--user", "verify", str(unit)],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "XDG_RUNTIME_DIR": runtime})
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def unit_sections(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string(text)
    return cp


def test_shipped_unit_is_a_notify_service_that_restarts_on_failure():
    unit = unit_sections(UNIT.read_text())
    svc = unit["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert svc["Restart"] == "on-failure"
    assert int(svc["WatchdogSec"]) > 0
    assert svc["ExecStart"].endswith("sarai run")
    assert unit["Install"]["WantedBy"] == "default.target"


def test_shipped_unit_passes_systemd_analyze_verify():
    r = verify(UNIT)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "" and r.stdout.strip() == ""  # not even a warning


def test_installed_unit_points_at_this_sarai_and_verifies(tmp_path):
    text = render_unit(sarai_command(), tmp_path / "my.yaml")
    unit = tmp_path / UNIT_NAME
    unit.write_text(text)
    svc = unit_sections(text)["Service"]
    exe = svc["ExecStart"].split()[0]
    assert Path(exe).is_absolute() and os.access(exe, os.X_OK)
    assert f"SARAI_CONFIG={tmp_path / 'my.yaml'}" in text
    r = verify(unit)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_autostart_entry_is_valid_and_starts_the_tray(tmp_path):
    shipped = unit_sections(DESKTOP.read_text())["Desktop Entry"]
    assert shipped["Exec"].endswith("sarai tray") and shipped["Type"] == "Application"
    installed = tmp_path / DESKTOP_NAME
    installed.write_text(render_desktop(sarai_command()))
    entry = unit_sections(installed.read_text())["Desktop Entry"]
    assert Path(entry["Exec"].split()[0]).is_absolute()
    if shutil.which("desktop-file-validate") is not None:
        for path in (DESKTOP, installed):
            r = subprocess.run(["desktop-file-validate", str(path)], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0 and not r.stdout.strip(), r.stdout


def sarai(env, *args):
    return subprocess.run([sys.executable, "-m", "sarai.daemon.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_service_install_status_uninstall(sarai_env, tmp_path):
    env = {**sarai_env, "XDG_RUNTIME_DIR": str(tmp_path)}
    config = Path(env["XDG_CONFIG_HOME"])
    unit = config / "systemd" / "user" / UNIT_NAME
    desktop = config / "autostart" / DESKTOP_NAME

    r = sarai(env, "service", "install")
    assert r.returncode == 0, r.stderr
    assert f"installed {unit}" in r.stdout and f"installed {desktop}" in r.stdout
    assert unit.is_file() and desktop.is_file()
    assert verify(unit).returncode == 0
    # No user manager runs here: the command says what to do instead of failing.
    assert "daemon-reload" in r.stdout

    r = sarai(env, "service", "status")
    assert r.returncode == 0, r.stderr
    assert "unit_installed: True" in r.stdout and "autostart_installed: True" in r.stdout
    assert "daemon: not running" in r.stdout

    r = sarai(env, "service", "uninstall")
    assert r.returncode == 0 and f"removed {unit}" in r.stdout
    assert not unit.exists() and not desktop.exists()
    r = sarai(env, "service", "uninstall")
    assert "nothing to remove" in r.stdout


def test_install_now_fails_clearly_when_nothing_could_be_started(sarai_env, tmp_path):
    # No user manager runs here, as on a machine reached over ssh without a session.
    env = {**sarai_env, "XDG_RUNTIME_DIR": str(tmp_path)}
    r = sarai(env, "service", "install", "--now")
    assert r.returncode != 0
    assert "SARAi was not started" in r.stderr and "systemctl --user" in r.stderr
    config = Path(env["XDG_CONFIG_HOME"])
    assert (config / "systemd" / "user" / UNIT_NAME).is_file()  # the files are still there
    assert "Traceback" not in r.stderr
