"""Finding the desktop's own echo-cancelled microphone (PulseAudio or PipeWire).

A desktop can already cancel echo: PulseAudio's module-echo-cancel and PipeWire's echo-cancel
module each offer a source (the cleaned microphone) paired with a sink (where playback must go
for the source to remove it). When SARAi listens on such a source and speaks into its sink,
cancelling again would only distort the user's voice, so its own canceller steps aside.

Sources are read with `pactl -f json` (PulseAudio 16 and later, and PipeWire's pulse server):
PulseAudio's are driven by "module-echo-cancel.c" (the sink shares its owner module);
PipeWire's carry a node.link-group (or node.group) starting with "echo-cancel-" (the sink has
the same group). Failing both, a node named like "echo-cancel" counts. Monitors never do.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EchoCancelled:
    source: str
    sink: str | None  # where SARAi must play for the source to cancel it (None: not found)
    kind: str  # pulseaudio | pipewire | name


def _pactl(*args: str, env: dict[str, str] | None = None) -> str | None:
    if shutil.which("pactl") is None:
        return None
    try:
        proc = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=5,
                              env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("pactl %s: %s", " ".join(args), exc)
        return None
    if proc.returncode != 0:
        log.debug("pactl %s failed: %s", " ".join(args), proc.stderr.strip())
        return None
    return proc.stdout


def _listed(kind: str, env: dict[str, str] | None) -> list[dict]:
    out = _pactl("-f", "json", "list", kind, env=env)
    if out is None:
        return []
    try:
        data = json.loads(out)
    except json.JSONDecodeError:  # a pactl too old for -f json prints text
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def _key(node: dict) -> tuple[str, str] | None:
    props = node.get("properties") or {}
    if node.get("driver") == "module-echo-cancel.c":
        return ("pulseaudio", str(node.get("owner_module")))
    group = props.get("node.link-group") or props.get("node.group") or ""
    if group.startswith("echo-cancel-"):
        return ("pipewire", group)
    if "echo-cancel" in (props.get("node.name") or node.get("name") or ""):
        return ("name", str(node.get("name")))
    return None


def _is_monitor(node: dict) -> bool:
    props = node.get("properties") or {}
    return props.get("device.class") == "monitor" or str(node.get("name", "")).endswith(
        ".monitor")


def echo_cancelled_sources(env: dict[str, str] | None = None) -> list[EchoCancelled]:
    """Every echo-cancelled source the sound server offers, with its paired sink."""
    sinks: dict[tuple[str, str], str] = {}
    for sink in _listed("sinks", env):
        key = _key(sink)
        if key is not None and key[0] != "name":
            sinks[key] = sink["name"]
    found = []
    for source in _listed("sources", env):
        key = _key(source)
        if key is None or _is_monitor(source):
            continue
        found.append(EchoCancelled(source["name"], sinks.get(key), key[0]))
    return found


def current_source(env: dict[str, str] | None = None) -> str | None:
    """The source a stream opened without naming one records from."""
    env = env if env is not None else dict(os.environ)
    if env.get("PULSE_SOURCE"):
        return env["PULSE_SOURCE"]
    out = _pactl("get-default-source", env=env)
    return out.strip() if out else None
