"""Run a command under strace and list everything it did that could reach beyond this
machine: a DNS query, a name-service daemon, reading the resolver's configuration, or a
connection to an address that is not loopback. Plus the files it left under $HOME/.cache.

The environment is cleaned the way a user's desktop session is: none of the CI variables
(onnxruntime turns its telemetry off by itself when it sees one of them, which would hide
the very thing looked for) and HOME in a fresh folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# onnxruntime's telemetry_environment.h: any of these (or ORT_RUNNING_UNIT_TESTS) set
# disables it, so a test run on a CI runner would never see a lookup.
CI_VARS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
           "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR",
           "BITBUCKET_BUILD_NUMBER", "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI")

_INET = re.compile(r"sa_family=AF_INET6?, (?P<addr>[^}]*)\}")
_LOOPBACK = re.compile(
    r'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"|inet_pton\(AF_INET6, "::ffff:127\.')
_RULES = [
    (re.compile(r"htons\(53\)"), "DNS query"),
    (re.compile(r"nscd/socket|/run/systemd/resolve/|io\.systemd\.Resolve|/run/avahi"),
     "name-service daemon"),
    (re.compile(r'open(at)?\(.*"/etc/resolv\.conf"'), "read /etc/resolv.conf"),
]


@dataclass
class Watched:
    returncode: int
    stdout: str
    stderr: str
    reaches: list[str]  # "why: strace line", one per offending call
    cache_files: list[Path]  # what it wrote under $HOME/.cache


def clean_env(base: dict[str, str], home: Path) -> dict[str, str]:
    """`base` as a desktop session would have it: no CI or ORT/HF switches, HOME at `home`."""
    env = {k: v for k, v in base.items()
           if k not in CI_VARS and not k.startswith(("ORT_", "HF_HUB_"))}
    env["HOME"] = str(home)
    env.pop("XDG_CACHE_HOME", None)
    return env


def require_strace() -> str:
    path = shutil.which("strace")
    if path is None:
        raise RuntimeError("strace is missing; run 'make setup' (Debian package strace)")
    return path


def run(cmd: list[str], env: dict[str, str], *, timeout: float = 600,
        cwd: str | Path | None = None) -> Watched:
    strace = require_strace()
    with tempfile.TemporaryDirectory(prefix="sarai-net-") as d:
        log = Path(d) / "trace"
        p = subprocess.run(
            [strace, "-f", "-qq", "--seccomp-bpf", "-s", "96",
             "-e", "trace=%network,openat,open", "-o", str(log), *cmd],
            env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd,
        )
        if not log.exists():
            raise RuntimeError(f"strace could not trace the command: {p.stderr[-500:]}")
        reaches = [f"{why}: {line.strip()[:200]}" for line in log.read_text().splitlines()
                   for why in _why(line)]
    cache = Path(env["HOME"]) / ".cache"
    files = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    return Watched(p.returncode, p.stdout, p.stderr, reaches, files)


def _why(line: str) -> list[str]:
    found = [why for rx, why in _RULES if rx.search(line)]
    for m in _INET.finditer(line):
        if not _LOOPBACK.search(m.group("addr")):
            found.append("connection beyond this machine")
    return found


if __name__ == "__main__":  # python tests/netwatch.py CMD…: a quick look by hand
    import sys

    with tempfile.TemporaryDirectory() as home:
        w = run(sys.argv[1:], clean_env(dict(os.environ), Path(home)))
        print(w.stdout, w.stderr, *w.reaches, *w.cache_files, sep="\n")
        print(f"rc={w.returncode} reaches={len(w.reaches)} cache_files={len(w.cache_files)}")
