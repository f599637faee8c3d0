"""Who keeps SARAi's own voice out of the microphone: the desktop, SARAi, or nobody.

`listen.echo_cancel` decides: `webrtc` always runs SARAi's own canceller, `off` (headphones)
and `desktop` (a microphone the desktop already cancels) never do, and `auto` looks for an
echo-cancelled source on the sound server (audio.desktop_echo). With one, SARAi listens on it
and speaks into its paired sink — chosen for this process through PULSE_SOURCE and PULSE_SINK
unless a microphone or speaker was chosen on purpose — and does not cancel twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from sarai.audio.desktop_echo import EchoCancelled, current_source, echo_cancelled_sources
from sarai.audio.echo import EchoCanceller, EchoTiming
from sarai.audio.settings import AudioSettings
from sarai.daemon.config import EchoMode, ListenSettings

log = logging.getLogger(__name__)


def echo_canceller(listen: ListenSettings, audio: AudioSettings) -> EchoCanceller:
    """The canceller the voice loop feeds, cancelling or stepping aside (logged)."""
    timing = EchoTiming(warmup_s=listen.echo_warmup_s, deaf_s=listen.echo_deaf_s)
    mode = listen.echo_cancel
    if mode is EchoMode.OFF:
        log.info("echo cancellation is off (listen.echo_cancel: off)")
        return EchoCanceller(timing, cancel=False)
    if mode is EchoMode.DESKTOP:
        log.info("the microphone is echo-cancelled by the desktop (listen.echo_cancel: "
                 "desktop); SARAi does not cancel again")
        return EchoCanceller(timing, cancel=False)
    if mode is EchoMode.AUTO:
        found = use_desktop_canceller(audio)
        if found is not None:
            log.info("listening on the desktop's echo-cancelled microphone %s (%s), speaking "
                     "into %s; SARAi does not cancel again", found.source, found.kind,
                     found.sink or "the default speaker")
            return EchoCanceller(timing, cancel=False)
    log.info("SARAi cancels its own echo (WebRTC AEC3)")
    return EchoCanceller(timing, cancel=True)


def _current_sink() -> str | None:
    if os.environ.get("PULSE_SINK"):
        return os.environ["PULSE_SINK"]
    if shutil.which("pactl") is None:
        return None
    try:
        proc = subprocess.run(["pactl", "get-default-sink"], capture_output=True, text=True,
                              timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def use_desktop_canceller(audio: AudioSettings) -> EchoCancelled | None:
    """The desktop's echo-cancelled source SARAi will listen on, if there is one it can use;
    may point this process's default source and sink at it (see the module comment)."""
    if audio.input_device is not None:
        name = str(audio.input_device).lower()
        if "echo-cancel" in name or "echo cancel" in name:
            return EchoCancelled(str(audio.input_device), None, "name")
        return None  # a microphone chosen by name or index: it is what it is
    pairs = echo_cancelled_sources()
    if not pairs:
        return None
    source = current_source()
    for pair in pairs:
        if pair.source != source:
            continue
        sink = _current_sink()
        if pair.sink is None or sink == pair.sink:
            return pair
        if audio.output_device is None and not os.environ.get("PULSE_SINK"):
            os.environ["PULSE_SINK"] = pair.sink
            return pair
        log.info("the microphone %s is echo-cancelled for %s, but SARAi speaks into %s: it "
                 "cancels its own echo", pair.source, pair.sink, sink)
        return None
    if os.environ.get("PULSE_SOURCE") or os.environ.get("PULSE_SINK") \
            or audio.output_device is not None:
        return None  # a microphone or speaker chosen on purpose: keep to it
    usable = [p for p in pairs if p.sink is not None]
    if not usable:
        return None
    pair = usable[0]
    os.environ["PULSE_SOURCE"] = pair.source
    os.environ["PULSE_SINK"] = pair.sink or ""
    return pair
