"""Microphones and speakers by the names the desktop shows, and what PortAudio must open.

On a PulseAudio or PipeWire desktop, PortAudio (through ALSA) sees only `pulse` and
`default`, while the sound settings show "USB Headset" or "Built-in Audio Analog Stereo".
Those names come from the sound server (`pactl`). A stream goes to one of them by opening
PortAudio's `pulse` device with PULSE_SOURCE / PULSE_SINK naming the server's device: the
pulse client library reads them when the stream connects. PortAudio's own device names (and
indexes) work as before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sarai.audio.errors import AudioError

Kind = Literal["input", "output"]
ENV = {"input": "PULSE_SOURCE", "output": "PULSE_SINK"}
_PACTL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Device:
    """One microphone or speaker. `name` is what `audio.input_device` / `output_device` take."""

    kind: Kind
    name: str
    description: str
    system: str  # "pulse" (PulseAudio / PipeWire) or "portaudio"
    default: bool = False
    index: int | None = None  # PortAudio's index
    monitor: bool = False  # a sink's monitor: what a speaker plays, not a microphone

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UnknownDevice(AudioError):
    """A configured device name that matches nothing; str() lists what exists."""


def _pactl(*args: str) -> str | None:
    if shutil.which("pactl") is None:
        return None
    try:
        p = subprocess.run(["pactl", *args], capture_output=True, text=True,
                           timeout=_PACTL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def pulse_devices() -> list[Device]:
    """The sound server's sources and sinks ([] without PulseAudio / PipeWire)."""
    out: list[Device] = []
    for kind, what in (("input", "source"), ("output", "sink")):
        text = _pactl("-f", "json", "list", f"{what}s")
        if text is None:
            continue
        try:
            items = json.loads(text)
        except ValueError:
            continue
        default = (_pactl(f"get-default-{what}") or "").strip()
        for item in items:
            name = item.get("name")
            if not isinstance(name, str):
                continue
            props = item.get("properties") or {}
            description = item.get("description") or props.get("device.description") or name
            # pactl 16 names a monitor's sink "monitor_source" in its JSON; newer ones
            # "monitor_of_sink"; the property is the same in both.
            of_sink = item.get("monitor_of_sink", item.get("monitor_source"))
            monitor = kind == "input" and (props.get("device.class") == "monitor"
                                           or of_sink not in (None, "", "n/a"))
            out.append(Device(kind, name, description, "pulse", name == default,
                              monitor=monitor))
    return out


def portaudio_devices() -> list[Device]:
    """PortAudio's devices ([] if PortAudio cannot be loaded)."""
    try:
        import sounddevice as sd
    except OSError:
        return []
    try:
        devices = sd.query_devices()
        default_in, default_out = sd.default.device
    except sd.PortAudioError:
        return []
    hostapis = sd.query_hostapis()
    out: list[Device] = []
    for d in devices:
        api = hostapis[d["hostapi"]]["name"]
        for kind, channels, default in (("input", "max_input_channels", default_in),
                                        ("output", "max_output_channels", default_out)):
            if d[channels] > 0:
                out.append(Device(kind, d["name"], f"{d['name']} ({api})", "portaudio",
                                  d["index"] == default, index=d["index"]))
    return out


def list_devices() -> list[Device]:
    """Every microphone and speaker: the sound server's first, then PortAudio's."""
    return pulse_devices() + portaudio_devices()


@dataclass(frozen=True)
class Target:
    """What a stream for a configured device opens: PortAudio's `device`, and the sound
    server's device to name in PULSE_SOURCE / PULSE_SINK (None: leave them as they are)."""

    device: str | int | None
    pulse: str | None = None


def _choices(devices: list[Device], kind: Kind) -> str:
    names = []
    for d in devices:
        if d.kind != kind or d.monitor:
            continue
        label = d.name if d.description == d.name else f"{d.description!r} ({d.name})"
        if d.system == "portaudio":
            label = f"{d.name!r} (PortAudio)"
        names.append(label + (" [default]" if d.default else ""))
    return "; ".join(dict.fromkeys(names)) or "none found"


def _pulse_stream_device(devices: list[Device], kind: Kind) -> str | None:
    """The PortAudio device through which the sound server's devices are reached."""
    names = {d.name for d in devices if d.system == "portaudio" and d.kind == kind}
    for candidate in ("pulse", "default"):
        if candidate in names:
            return candidate
    return None  # PortAudio's default device; PULSE_* still applies if it is the server


def find(wanted: str | int | None, kind: Kind, devices: list[Device] | None = None) -> Target:
    """What to open for the configured `wanted` (None: the system default).

    Names are matched as the sound server's device name, then its description (any case),
    then PortAudio's name, then as a part of exactly one description or name. A number is
    PortAudio's index unless only a name contains it. UnknownDevice
    (an AudioError) lists what exists when nothing, or more than one device, matches.
    """
    if wanted is None or isinstance(wanted, int):
        return Target(wanted)
    text = wanted.strip()
    devices = list_devices() if devices is None else devices
    mine = [d for d in devices if d.kind == kind]
    if text.isdigit():
        # A number is PortAudio's index, unless no device has that index and a name does
        # contain it ("USB Audio 7400").
        index = int(text)
        if any(d.index == index for d in mine):
            return Target(index)
        try:
            return _by_name(text, kind, devices, mine)
        except UnknownDevice:
            return Target(index)
    return _by_name(text, kind, devices, mine)


def _by_name(text: str, kind: Kind, devices: list[Device], mine: list[Device]) -> Target:
    low = text.lower()

    def target(d: Device) -> Target:
        if d.system == "pulse":
            return Target(_pulse_stream_device(devices, kind), d.name)
        return Target(d.name)

    for match in (
        lambda d: d.system == "pulse" and d.name == text,
        lambda d: d.system == "pulse" and d.description.lower() == low,
        lambda d: d.system == "portaudio" and d.name.lower() == low,
    ):
        hits = [d for d in mine if match(d)]
        if hits:
            return target(hits[0])
    partial = [d for d in mine if not d.monitor
               and (low in d.description.lower() or low in d.name.lower())]
    by_name = {(d.system, d.name): d for d in partial}
    if len(by_name) == 1:
        return target(next(iter(by_name.values())))
    what = "microphone" if kind == "input" else "speaker"
    if len(by_name) > 1:
        raise UnknownDevice(
            f"{what} name {text!r} is ambiguous: it matches "
            + "; ".join(f"{d.description!r} ({d.name})" for d in by_name.values())
            + " (give the full name; 'sarai devices' lists them)")
    raise UnknownDevice(f"{text!r} is not a {what} here; {what}s: {_choices(devices, kind)} "
                        "('sarai devices' lists them)")


def use(wanted: str | int | None, kind: Kind) -> str | int | None:
    """Resolve `wanted` and prepare this process to open it: sets PULSE_SOURCE / PULSE_SINK
    when it is a sound-server device, and returns the PortAudio device to open."""
    target = find(wanted, kind)
    if target.pulse is not None:
        # Read by the pulse client library when the stream connects (ALSA's pulse plugin
        # makes a new connection for every stream), so it must be set before the stream opens.
        os.environ[ENV[kind]] = target.pulse
    return target.device
