"""The voice loop in simulated rooms: SARAi's own voice comes back through the room, a person
talks over it from across the room, and the devices misbehave.

The device-free harness runs the real front end (WebRTC AEC3 canceller, webrtcvad), core and
speaker in virtual time; the speaker's sound reaches the microphone through a pyroomacoustics
impulse response over room noise (audio.room). SARAi's voice is the real espeak-ng voice;
Whisper and the models are the stand-ins of tests/harness_parts.py. The person is recorded
speech (Asterisk's prompts). The last tests use real PulseAudio devices.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from harness_parts import ScriptedModels, kept_levels, make_harness, silence
from recordings import PROMPTS
from scipy.signal import fftconvolve

from sarai.audio.devices import rescan_devices
from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.room import (
    ROOMS,
    RoomEcho,
    echo_gain,
    impulse_responses,
    scaled_to,
)
from sarai.daemon.conversation.harness import SpeakerWatch
from sarai.daemon.conversation.requests import typed
from sarai.models import memory

ECHO_DB = -20.0
STORY = ("Once upon a time a dragon lived in the mountains above a quiet village. Every "
         "morning it flew over the river and counted the boats below. One day a girl climbed "
         "all the way up to ask it why it never came down. The dragon said it was afraid of "
         "the noise of the market. So the girl taught it to listen to the bells instead, and "
         "from then on it came down every Sunday to hear them ring.")


# Seconds into the story (after its first second of silence) when a person talks over it.
MOMENTS_S = (13.0, 13.5, 14.0, 14.5, 15.0, 15.5)


def _voice_turns(h) -> set[int]:
    h.probe.drain()
    return {e.data["turn"] for e in h.probe.seen
            if e.kind.value == "phase" and e.data.get("source") == "voice"}


def _harness(tmp: Path, room: str | None, *, rate: int = 22050, **kw):
    """A harness whose speaker (with the real one's 80 ms buffer) is heard through `room`
    (None: headphones in a quiet room) at ECHO_DB, 30 ms later than its timestamps say."""
    from harness_parts import _Voices

    voice = _Voices().voice()
    if room is None:
        path = RoomEcho(np.zeros(1), 0.0, noise_db=-60.0)
    else:
        rirs = impulse_responses(ROOMS[room])
        gain = echo_gain(rirs.speaker, voice.synthesize(STORY.split(". ")[0] + "."),
                         voice.sample_rate, ECHO_DB)
        path = RoomEcho(rirs.speaker, gain, delay_s=0.03, noise_db=ROOMS[room].noise_dbfs)
    # The whole story is spoken: no limit on a spoken answer's length.
    h = make_harness(tmp, yaml="assistant:\n  spoken_max_sentences: 0\n  spoken_max_s: 0\n",
                     models=ScriptedModels(reply=lambda q: STORY if "story" in q
                                           else "All right."),
                     echo_path=path, speaker_rate=rate, speaker_latency_s=0.08, **kw)
    return h, SpeakerWatch(h)


def _person(name: str, room: str | None, rel_db: float) -> np.ndarray:
    """A recorded prompt as the microphone hears it from the person's seat."""
    x = read_audio(PROMPTS["en"] / f"{name}.wav").samples.astype(np.float64)
    loud = np.flatnonzero(np.abs(x) > 300)
    x = x[loud[0] : loud[-1] + 1]
    if room is not None:
        x = fftconvolve(x, impulse_responses(ROOMS[room]).user)[: len(x) + 2000]
    return np.clip(np.round(scaled_to(x, ECHO_DB + rel_db)), -32768, 32767).astype(np.int16)


def _until_quiet(h, watch, limit_s: float = 90.0) -> None:
    waited = 0.0
    while (h.core.busy or h.speaker.playing) and waited < limit_s:
        h.feed(silence(0.3), on_frame=watch)
        waited += 0.3
    h.feed(silence(1.5), on_frame=watch)


@pytest.mark.parametrize("room", ["office", "living"])
def test_its_own_voice_in_a_room_is_never_taken_for_the_user(tmp_path, room):
    h, watch = _harness(tmp_path, room)
    h.feed(silence(1.0), on_frame=watch)
    for _ in range(2):
        h.core.ask(typed("Tell me a story."))
        h.core.pump()
        _until_quiet(h, watch)
    heard_s = sum(len(b) for _, b in h.speaker.heard) / h.speaker.rate
    assert heard_s > 40  # both stories were heard in full: nothing cut them short
    assert watch.stops == [] and _voice_turns(h) == set()
    # In the living room's longer reverberation AEC3 now and then lets a decaying tail
    # through for a few frames: at most one short pause there, none in the office.
    assert len(watch.pauses) <= (0 if room == "office" else 1), watch.pauses
    assert h.echo.restarts == 0 and h.echo.echo_heard


@pytest.mark.parametrize(("room", "rel_db"), [("office", 0.0), ("office", -10.0),
                                              ("living", 0.0), ("living", -10.0)])
def test_talking_over_it_in_a_room_stops_it(tmp_path, room, rel_db):
    """The person talks over the story at six moments past the canceller's warm-up. How soon
    they get through depends on what SARAi is saying just then (a quiet first syllable over
    a loud vowel of SARAi's waits for the next one), so one moment alone says little: every
    interruption at the echo's level stops it and all but one ten dB below it, paused
    before it is stopped, at the median within 0.6 s of the person's first sound at the
    echo's level and 1.2 s below it (the room bench times 20 interruptions per level)."""
    person = _person("conf-nonextended", room, rel_db)
    paused_after: list[float] = []
    stopped = 0
    for n, moment in enumerate(MOMENTS_S):
        (tmp_path / str(n)).mkdir()
        h, watch = _harness(tmp_path / str(n), room)
        h.feed(silence(1.0), on_frame=watch)
        h.core.ask(typed("Tell me a story."))
        h.core.pump()
        h.feed(silence(moment), on_frame=watch)
        assert watch.stops == [] and h.speaker.playing
        start = h.now
        h.feed(person, on_frame=watch)
        if not watch.stops:
            continue
        stopped += 1
        # Stopped while the person was still talking, and paused before that.
        assert start < watch.stops[0] < start + len(person) / SAMPLE_RATE, moment
        assert watch.pauses and start < watch.pauses[-1] <= watch.stops[0], moment
        paused_after.append(watch.pauses[-1] - start)
        first = h.probe.turn(60)
        assert first["outcome"] == "interrupted" and first["interrupted"], moment
    assert stopped >= len(MOMENTS_S) - (0 if rel_db == 0 else 1), (stopped, paused_after)
    assert np.median(paused_after) < (0.6 if rel_db == 0 else 1.2), paused_after


def test_once_it_has_stopped_for_the_person_their_words_reach_the_turn_whole(tmp_path):
    """AEC3 holds down what it hears for a few hundred ms after the speaker goes quiet, the
    person included; once SARAi has gone quiet for them and its echo has come back, the turn
    hears the microphone as it is. (Before, a quieter stretch of the person's words right
    after the stop fell below the echo gate and was lost from the turn.)"""
    h, watch = _harness(tmp_path, "office")
    transcriber = h.core.assistant.transcriber
    person = _person("conf-nonextended", "office", 0.0)
    transcriber.learn(person, "Extension not found.")
    h.feed(silence(1.0), on_frame=watch)
    h.core.ask(typed("Tell me a story."))
    h.core.pump()
    h.feed(silence(MOMENTS_S[0]), on_frame=watch)
    start = h.now
    h.feed(person, on_frame=watch)
    h.feed(silence(1.5), on_frame=watch)
    assert watch.stops and transcriber.heard
    # What the person said from when SARAi's echo had come back after the stop: every voiced
    # 10 ms of it is in the turn, at about its level.
    after = round((watch.stops[0] - start + 0.3) * SAMPLE_RATE)
    assert after < len(person) - SAMPLE_RATE // 2
    kept = kept_levels(person[after:], transcriber.heard[-1])
    assert kept.min() > 0.25, kept.round(2)


def test_with_headphones_talking_over_it_works_from_its_first_second(tmp_path, caplog):
    """Nothing comes back (headphones, a quiet room): AEC3, new, would hold the user down for
    its first seconds; the canceller notices there is no echo and steps aside."""
    h, watch = _harness(tmp_path, None)
    h.feed(silence(1.0), on_frame=watch)
    with caplog.at_level(logging.INFO, logger="sarai.audio.echo"):
        h.core.ask(typed("Tell me a story."))
        h.core.pump()
        h.feed(silence(1.5), on_frame=watch)
        start = h.now
        h.feed(_person("conf-nonextended", None, 0.0), on_frame=watch)
    assert watch.stops and watch.stops[0] - start < 0.5, (watch.stops, start)
    assert "does not come back" in caplog.text
    assert not h.echo.echo_heard


def test_a_speaker_at_44_1_khz(tmp_path):
    h, watch = _harness(tmp_path, "office", rate=44100)
    h.feed(silence(1.0), on_frame=watch)
    h.core.ask(typed("Tell me a story."))
    h.core.pump()
    h.feed(silence(10.0), on_frame=watch)
    assert watch.pauses == [] and watch.stops == []
    start = h.now
    h.feed(_person("conf-nonextended", "office", 0.0), on_frame=watch)
    assert watch.stops and watch.stops[0] - start < 1.0
    _until_quiet(h, watch)
    assert h.echo.restarts == 0


def test_a_reference_that_stalls_restarts_the_canceller_and_no_turn_comes_of_it(tmp_path,
                                                                                 caplog):
    """The speaker keeps playing but its blocks stop reaching the canceller for half a
    second: it starts over (and says so), hears nothing over SARAi meanwhile, and learns the
    room again from the reference that follows."""
    h, watch = _harness(tmp_path, "office")
    feed_reference = h.speaker.on_played
    lost: list[float] = []

    def played(samples, rate, heard_at):
        if 6.0 <= heard_at - t0 < 6.5:
            lost.append(heard_at)
            return
        feed_reference(samples, rate, heard_at)

    h.speaker.on_played = played
    t0 = h.now
    with caplog.at_level(logging.WARNING, logger="sarai.audio.echo"):
        for _ in range(2):
            h.core.ask(typed("Tell me a story."))
            h.core.pump()
            _until_quiet(h, watch)
    assert lost
    assert h.echo.restarts == 1 and "stopped arriving" in caplog.text
    assert watch.pauses == [] and watch.stops == []
    assert _voice_turns(h) == set()
    assert not h.echo.converging  # it heard enough of the rest to trust itself again


def test_a_speaker_that_disappears_mid_answer_leaves_the_loop_listening(tmp_path, caplog):
    """The device vanishes: nothing more is played or handed to the canceller, and the answer
    never finishes. The canceller says so and steps aside once SARAi can no longer be in what
    the microphone hears; the person talking then interrupts the stuck answer, and is heard."""
    h, watch = _harness(tmp_path, "office")
    h.feed(silence(1.0), on_frame=watch)
    h.core.ask(typed("Tell me a story."))
    h.core.pump()
    h.feed(silence(6.0), on_frame=watch)
    speaker = h.speaker

    def gone(until: float) -> np.ndarray:
        speaker._played_until = until  # time passes; nothing is pulled, heard or handed over
        return np.zeros(0, np.int16)

    with caplog.at_level(logging.WARNING, logger="sarai.audio.echo"):
        speaker.advance = gone  # type: ignore[method-assign]
        h.feed(silence(2.0), on_frame=watch)
    assert "stopped arriving" in caplog.text
    assert h.core.view.answering is not None  # the answer is stuck: its audio never ends
    words = _person("conf-nonextended", "office", 0.0)
    h.core.assistant.transcriber.learn(words, "Stop, please.")
    h.feed(words, on_frame=watch)
    h.feed(silence(1.5), on_frame=watch)
    turns = h.probe.turns()
    assert any(t["outcome"] == "interrupted" for t in turns), turns
    assert any(t["transcript"] == "Stop, please." for t in turns) or _voice_turns(h)


# --- real devices ---------------------------------------------------------------------------

def _pactl(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(["pactl", *args], capture_output=True, text=True,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


class PrivateServer:
    """A PulseAudio server of this test's own (so its default devices and modules are
    nobody else's), with two null sinks: the room and the speaker."""

    def __init__(self, room_args: str = "rate=16000 channels=1") -> None:
        self.sock = Path(tempfile.mkdtemp(prefix="sarai-pa-")) / "native"
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
             "-L", f"module-native-protocol-unix socket={self.sock} auth-anonymous=1",
             "-L", f"module-null-sink sink_name=room {room_args}",
             "-L", "module-null-sink sink_name=speaker"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["pactl", "info"], env={**os.environ, **self.env},
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        self.close()
        raise AssertionError("private PulseAudio server did not start")

    @property
    def env(self) -> dict[str, str]:
        return {"PULSE_SERVER": f"unix:{self.sock}"}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def private_pulse(monkeypatch):
    server = PrivateServer()
    for key in ("PULSE_SOURCE", "PULSE_SINK"):
        monkeypatch.setenv(key, "")  # so what the code under test sets is undone too
        monkeypatch.delenv(key)
    monkeypatch.setenv("PULSE_SERVER", server.env["PULSE_SERVER"])
    rescan_devices()  # PortAudio may have listed the devices of an earlier test's server
    yield server
    server.close()


def test_the_desktops_echo_cancelled_microphone_is_used_and_not_cancelled_twice(
        private_pulse, monkeypatch, caplog):
    from sarai.audio.desktop_echo import echo_cancelled_sources
    from sarai.audio.settings import AudioSettings
    from sarai.daemon.config import EchoMode, ListenSettings
    from sarai.daemon.conversation.echo_setup import echo_canceller

    env = private_pulse.env
    listen, audio = ListenSettings(), AudioSettings.model_validate({})
    with caplog.at_level(logging.INFO):
        assert echo_canceller(listen, audio).cancelling  # none on this desktop yet
    _pactl(env, "load-module", "module-echo-cancel", "source_master=room.monitor",
           "sink_master=speaker", "source_name=ec_mic", "sink_name=ec_speaker",
           "aec_method=webrtc")
    found = echo_cancelled_sources()
    assert [(f.source, f.sink, f.kind) for f in found] == [("ec_mic", "ec_speaker",
                                                            "pulseaudio")]
    # Not the default microphone: SARAi is pointed at it, and at its speaker.
    _pactl(env, "set-default-source", "room.monitor")
    _pactl(env, "set-default-sink", "speaker")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert not echo_canceller(listen, audio).cancelling
    assert (os.environ.get("PULSE_SOURCE"), os.environ.get("PULSE_SINK")) == ("ec_mic",
                                                                              "ec_speaker")
    assert "echo-cancelled microphone ec_mic" in caplog.text
    # The default microphone: SARAi keeps it, and speaks where it cancels.
    monkeypatch.delenv("PULSE_SOURCE")
    monkeypatch.delenv("PULSE_SINK")
    _pactl(env, "set-default-source", "ec_mic")
    assert not echo_canceller(listen, audio).cancelling
    assert "PULSE_SOURCE" not in os.environ and os.environ.get("PULSE_SINK") == "ec_speaker"
    # A microphone chosen on purpose is kept, and SARAi cancels its own echo.
    monkeypatch.setenv("PULSE_SOURCE", "room.monitor")
    monkeypatch.delenv("PULSE_SINK")
    assert echo_canceller(listen, audio).cancelling
    # Forced either way.
    assert echo_canceller(listen.model_copy(update={"echo_cancel": EchoMode.WEBRTC}),
                          audio).cancelling
    assert not echo_canceller(listen.model_copy(update={"echo_cancel": EchoMode.OFF}),
                              audio).cancelling


def test_a_48_khz_stereo_microphone_in_a_room_with_an_echo(models_dir, monkeypatch, tmp_path,
                                                           make_speech):
    """The room is a 48 kHz stereo device with the speaker coming back into it: SARAi does
    not answer itself, and a person speaking is heard."""
    from sarai.daemon.app import Context, build_assistant
    from sarai.daemon.config import load_config
    from sarai.daemon.conversation.voice_loop import VoiceLoop
    from sarai.daemon.events import Event, EventKind, State
    from sarai.daemon.paths import Paths

    server = PrivateServer(room_args="rate=48000 channels=2")
    env = {**server.env, "PULSE_SOURCE": "room.monitor", "PULSE_SINK": "speaker"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rescan_devices()
    _pactl(env, "load-module", "module-loopback", "source=speaker.monitor", "sink=room",
           "latency_msec=60")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("")
    ctx = Context(load_config(cfg), Paths.from_env())
    assistant = build_assistant(ctx, hear=True, speak=True)
    assistant.registry.preload_pinned()
    events: queue.Queue[Event] = queue.Queue()
    loop = VoiceLoop(ctx.config.audio, assistant, events.put, listen=ctx.config.listen)
    try:
        loop.start()
        memory.settle()  # as `sarai run` does once it listens (see tests/test_voice_loop.py)
        deadline = time.monotonic() + 60
        while loop.state is not State.LISTENING and time.monotonic() < deadline:
            time.sleep(0.05)
        rec = loop.ask("Tell me about the sea and the sky in three sentences.")
        assert rec.reply and "first_audio" in rec.timings
        assert not rec.interrupted, "SARAi's own echo cut its answer short"

        def turns(seconds: float) -> list[dict]:
            out, end = [], time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    ev = events.get(timeout=0.3)
                except queue.Empty:
                    continue
                if ev.kind is EventKind.TURN:
                    out.append(ev.data)
            return out

        assert [t["source"] for t in turns(6)] == ["text"]  # its own echo made no turn
        assert loop.turns == 1
        subprocess.run(["paplay", "--device=room", str(make_speech(["What is your name?"]))],
                       env={**os.environ, **env}, check=True, timeout=30)
        heard = turns(60)
        assert heard and "name" in heard[0]["transcript"].lower(), heard
    finally:
        loop.stop()
        assistant.registry.close()
        server.close()
        gc.unfreeze()


def test_sarai_bench_room_reports_each_room_in_the_issues_terms(sarai, sarai_env):
    """The command itself, shortened: one room, a fraction of a minute, one trial a level."""
    r = sarai("bench", "room", "--room", "office", "--speech-min", "0.3", "--trials", "1",
              "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    (room,) = out["rooms"]
    assert {"name", "rt60_s", "speech_min", "self_interruptions_per_min", "false_turns",
            "barge_in_recall_0db", "barge_in_recall_m10db", "barge_in_stop_ms",
            "echo_reduction_db"} <= set(room)
    assert room["name"] == "office" and 0.25 < room["rt60_s"] < 0.4
    assert room["speech_min"] >= 0.3 and set(room["barge_in_stop_ms"]) == {"p50", "p90"}
    # Its own voice in the office is never taken for the person, and is well cancelled.
    assert room["self_interruptions_per_min"] == 0 and room["false_turns"] == 0
    assert room["echo_reduction_db"] > 25
    saved = list((Path(sarai_env["XDG_STATE_HOME"]) / "sarai" / "bench").glob("room-*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text()) == out
