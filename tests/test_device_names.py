"""Microphones and speakers by the names the desktop shows: listed from the real PulseAudio
server, matched from the config, checked by `config validate` and at start-up, and used by
a real turn (a null sink described as a headset stands in for one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from conftest import REPO
from sarai.audio.device_names import Device, Target, UnknownDevice, find, list_devices
from sarai.audio.pcm import read_audio

pytestmark = pytest.mark.audio_devices


def pactl(*args: str, server: str) -> str:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "PULSE_SERVER": server}).stdout.strip()


@pytest.fixture
def headset(pulse, monkeypatch):
    """A sink the desktop would show as "SARAi Test Headset <tag>"."""
    monkeypatch.setenv("PULSE_SERVER", pulse.server)
    tag = uuid.uuid4().hex[:4]
    name, description = f"sarai_headset_{tag}", f"SARAi Test Headset {tag}"
    module = pactl("load-module", "module-null-sink", f"sink_name={name}", server=pulse.server)
    # pactl cannot pass a description with spaces to the module; pacmd can set it after.
    subprocess.run(["pacmd", "update-sink-proplist", name,
                    f'device.description="{description}"'], check=True,
                   env={**os.environ, "PULSE_SERVER": pulse.server})
    try:
        yield name, description
    finally:
        pactl("unload-module", module, server=pulse.server)


def test_the_sound_servers_devices_are_listed_and_matched(headset, pulse):
    name, description = headset
    devices = list_devices()
    mine = [d for d in devices if d.name == name]
    assert [(d.kind, d.description, d.system) for d in mine] == [
        ("output", description, "pulse")]
    monitor = next(d for d in devices if d.name == f"{name}.monitor")
    assert monitor.kind == "input" and monitor.monitor
    assert any(d.system == "portaudio" and d.name == "pulse" for d in devices)
    for wanted in (name, description, description.upper(), description.split()[-1]):
        t = find(wanted, "output", devices)
        assert (t.device, t.pulse) == ("pulse", name), wanted
    assert find(f"{name}.monitor", "input", devices).pulse == f"{name}.monitor"
    assert find(None, "output", devices).device is None and find(3, "input", devices).device == 3
    assert find("pulse", "output", devices) == find("PULSE", "output", devices)


def test_a_number_is_an_index_unless_only_a_name_contains_it():
    devices = [Device("output", "usb_7400", "USB Headset 7400", "pulse"),
               Device("output", "pulse", "pulse (ALSA)", "portaudio", index=7)]
    assert find("7400", "output", devices) == Target("pulse", "usb_7400")
    assert find("7", "output", devices) == Target(7)
    assert find("12", "output", devices) == Target(12)  # PortAudio says what is wrong


def test_an_unknown_or_ambiguous_name_lists_what_exists(headset, pulse):
    name, description = headset
    with pytest.raises(UnknownDevice) as e:
        find("USB Headset", "output")
    text = str(e.value)
    assert text.startswith("'USB Headset' is not a speaker here; speakers: ")
    assert f"'{description}' ({name})" in text and "'pulse' (PortAudio)" in text
    with pytest.raises(UnknownDevice, match="ambiguous"):
        find("SARAi", "output")  # the room, the speaker and the headset all match


def test_config_validate_and_start_up_reject_an_unknown_device(sarai_env, tmp_path, headset):
    name, description = headset
    cfg = tmp_path / "c.yaml"
    cfg.write_text("audio:\n  output_device: \"USB Headset\"\n")
    env = {**sarai_env, "PULSE_SERVER": os.environ["PULSE_SERVER"]}
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "config", "validate", str(cfg)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith(f"sarai: error: {cfg}:2: audio.output_device: 'USB Headset' is "
                               "not a speaker here; speakers: ")
    assert description in r.stderr
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "--config", str(cfg), "run"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "'USB Headset' is not a speaker here" in r.stderr
    assert "Listening" not in r.stderr and time.monotonic() - t0 < 60
    cfg.write_text(f"audio:\n  output_device: \"{description}\"\n")
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "config", "validate", str(cfg)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"{cfg}: ok"


def test_a_turn_speaks_on_the_speaker_named_as_the_desktop_names_it(sarai_env, tmp_path,
                                                                    headset, pulse):
    name, description = headset
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"audio:\n  output_device: \"{description}\"\n")
    env = {k: v for k, v in sarai_env.items() if k not in ("PULSE_SINK", "PULSE_SOURCE")}
    env["PULSE_SERVER"] = pulse.server
    heard = tmp_path / "headset.wav"
    rec = subprocess.Popen(["parecord", f"--device={name}.monitor", "--rate=16000",
                            "--channels=1", "--file-format=wav", str(heard)],
                           env={**os.environ, "PULSE_SERVER": pulse.server})
    try:
        r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "--config", str(cfg),
                            "ask", "Say hello to me."], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
        time.sleep(1.0)
    finally:
        rec.terminate()
        rec.wait(10)
    assert r.returncode == 0, r.stderr
    samples = read_audio(heard).samples
    assert np.abs(samples).max() > 3000  # the answer was played on the headset


def test_devices_test_records_with_a_meter_and_plays_back(sarai_env, tmp_path, headset, pulse,
                                                          make_speech):
    name, description = headset
    wav = make_speech(["Testing the microphone, one two three."], pause_s=0.2)
    env = {**sarai_env, "PULSE_SERVER": pulse.server}
    heard = tmp_path / "playback.wav"
    rec = subprocess.Popen(["parecord", f"--device={name}.monitor", "--rate=16000",
                            "--channels=1", "--file-format=wav", str(heard)],
                           env={**os.environ, "PULSE_SERVER": pulse.server})
    proc = subprocess.Popen([sys.executable, "-m", "sarai.daemon.cli", "devices", "test",
                             "--input", f"{pulse.room}.monitor", "--output", description],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(1.5)
        pulse.play(wav).wait(30)
        out, err = proc.communicate(timeout=120)
        time.sleep(0.5)
    finally:
        rec.terminate()
        rec.wait(10)
    assert proc.returncode == 0, err
    assert "Recording 3 s" in out and "Playing it back" in out and "Done." in out
    assert "That was silence" not in out
    meters = [line for line in err.splitlines() if line.strip().startswith("level [")]
    assert len(meters) >= 10 and any("#" * 10 in m for m in meters)
    assert np.abs(read_audio(heard).samples).max() > 1000


def test_sarai_devices_json(sarai_env, headset, pulse):
    name, description = headset
    env = {**sarai_env, "PULSE_SERVER": pulse.server}
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "devices", "--json"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    devices = json.loads(r.stdout)["devices"]
    assert {"kind": "output", "name": name, "description": description, "system": "pulse",
            "default": False, "index": None, "monitor": False} in devices
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "devices"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("Microphones:") and description in r.stdout
