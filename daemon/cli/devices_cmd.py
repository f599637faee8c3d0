"""`sarai devices`: microphones and speakers by the names the desktop uses; `devices test`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sarai.audio.device_names import Device
    from sarai.daemon.app import Context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devices", help="list the microphones and speakers SARAi can use (test them)",
        description="List microphones and speakers: the sound server's (PulseAudio or "
        "PipeWire, the names the desktop's sound settings show) and PortAudio's. Any name "
        "in the NAME column, or a description, can go into audio.input_device / "
        "audio.output_device. * marks the defaults.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_list, no_context=True)
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION")
    t = dsub.add_parser(
        "test", help="record a few seconds with a live level meter and play them back",
        description="Record from the microphone (the configured one, or --input) with a "
        "live level meter, then play the recording on the speaker (the configured one, or "
        "--output), so you can hear what SARAi hears.",
    )
    t.add_argument("--input", metavar="NAME", help="microphone (default: audio.input_device)")
    t.add_argument("--output", metavar="NAME", help="speaker (default: audio.output_device)")
    t.add_argument("--seconds", type=float, default=3.0, help="how long to record (default 3)")
    t.set_defaults(func=_test, no_context=False)


def _rows(devices: list[Device], kind: str) -> list[str]:
    out = []
    for d in devices:
        if d.kind != kind:
            continue
        mark = "*" if d.default else " "
        where = "PortAudio" if d.system == "portaudio" else "sound server"
        extra = " (monitor of a speaker)" if d.monitor else ""
        name = d.name if d.system == "pulse" else (f"{d.index}: {d.name}")
        out.append(f" {mark} {d.description[:38]:38} {name[:44]:44} {where}{extra}")
    return out


def _list(args: argparse.Namespace, ctx: None) -> int:  # noqa: ARG001
    from sarai.audio.device_names import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps({"devices": [d.as_dict() for d in devices]}, indent=2,
                         ensure_ascii=False))
        return 0
    head = f"   {'DESCRIPTION':38} {'NAME':44} FROM"
    for kind, title in (("input", "Microphones"), ("output", "Speakers")):
        print(f"{title}:")
        rows = _rows(devices, kind)
        print("\n".join([head, *rows]) if rows else "   none found")
        print()
    if not any(d.system == "pulse" for d in devices):
        print("(No PulseAudio or PipeWire server answered: only PortAudio's devices are shown.)")
    print("Use a description or a name in audio.input_device / audio.output_device; "
          "'sarai devices test' tries them.")
    return 0


def _meter(level: float, width: int = 40) -> str:
    import math

    db = 20 * math.log10(max(level, 1.0) / 32768)  # dBFS of the block's RMS
    filled = int(round(max(0.0, min(1.0, (db + 60) / 60)) * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {db:6.1f} dBFS"


def _test(args: argparse.Namespace, ctx: Context) -> int:
    import numpy as np

    from sarai.audio.device_names import use
    from sarai.audio.errors import AudioError

    try:
        import sounddevice as sd
    except OSError as exc:
        raise AudioError(f"audio system unavailable: {exc}") from exc
    audio = ctx.config.audio
    wanted_in = args.input if args.input is not None else audio.input_device
    wanted_out = args.output if args.output is not None else audio.output_device
    mic, speaker = use(wanted_in, "input"), use(wanted_out, "output")
    rate = 16000
    frames = int(args.seconds * rate)
    got: list[np.ndarray] = []
    levels: list[float] = []
    tty = sys.stderr.isatty()

    def callback(indata, n, time_info, status) -> None:  # noqa: ARG001
        block = indata[:, 0].copy()
        got.append(block)
        levels.append(float(np.sqrt(np.mean(block.astype(np.float64) ** 2))) if n else 0.0)

    print(f"Recording {args.seconds:g} s from {wanted_in or 'the default microphone'}: "
          "say something…", flush=True)
    try:
        with sd.InputStream(samplerate=rate, channels=1, dtype="int16", device=mic,
                            blocksize=rate // 10, callback=callback):
            end = time.monotonic() + args.seconds
            shown = 0
            while time.monotonic() < end:
                time.sleep(0.1)
                if levels and len(levels) != shown:
                    shown = len(levels)
                    line = "  level " + _meter(levels[-1])
                    print(("\r" + line) if tty else line, end="" if tty else "\n",
                          file=sys.stderr, flush=True)
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioError(f"cannot record from the microphone: {exc}") from exc
    if tty:
        print(file=sys.stderr)
    samples = np.concatenate(got)[:frames] if got else np.zeros(0, np.int16)
    peak = int(np.abs(samples).max()) if len(samples) else 0
    loudest = max(levels) if levels else 0.0
    print(f"Recorded {len(samples) / rate:.1f} s; loudest {_meter(loudest).split('] ')[1]}, "
          f"peak {peak}.")
    if peak < 30:
        print("That was silence: is the microphone muted, or is another one the default?")
    print(f"Playing it back on {wanted_out or 'the default speaker'}…", flush=True)
    try:
        sd.play(samples, rate, device=speaker, blocking=True)
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioError(f"cannot play on the speaker: {exc}") from exc
    print("Done.")
    return 0
