"""The hands-free loop on real devices: PulseAudio null sinks are the room and the speaker.

Speech is played into the "room" sink, whose monitor is SARAi's microphone; SARAi answers
into the "speaker" sink. For the echo tests a loopback carries the speaker back into the room,
as a loudspeaker next to a microphone would.
"""

from __future__ import annotations

import gc
import queue
import tempfile
import time
from pathlib import Path

import pytest
from private_pulse import PrivatePulse
from recordings import PROMPTS

from conftest import StreamSpy, wait_until
from sarai.audio.devices import MicSource, SpeakerSink
from sarai.audio.errors import AudioError
from sarai.audio.pcm import read_audio
from sarai.daemon.app import Context, build_assistant
from sarai.daemon.config import ListenSettings, load_config
from sarai.daemon.conversation.voice_loop import VoiceLoop
from sarai.daemon.events import Event, EventKind, ListenMode, State
from sarai.daemon.paths import Paths
from sarai.models import memory


class Harness:
    def __init__(self, loop: VoiceLoop, events: queue.Queue[Event], pulse) -> None:
        self.loop = loop
        self.events = events
        self.pulse = pulse
        self.seen: list[Event] = []

    def play(self, wav: Path) -> None:
        self.pulse.play(wav).wait(30)

    def turn(self, timeout: float = 90) -> dict:
        """The next turn record, or fail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(ev)
            if ev.kind is EventKind.TURN:
                return ev.data
        raise AssertionError(f"no turn within {timeout} s; events: {self.states()}")

    def no_turn(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                ev = self.events.get(timeout=0.3)
            except queue.Empty:
                continue
            self.seen.append(ev)
            assert ev.kind is not EventKind.TURN, f"unexpected turn: {ev.data}"

    def states(self) -> list[str]:
        return [e.data["state"] for e in self.seen if e.kind is EventKind.STATE]

    def wait_state(self, state: State, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.loop.state is not state:
            assert time.monotonic() < deadline, f"never reached {state}; now {self.loop.state}"
            time.sleep(0.05)


@pytest.fixture
def voice(pulse, models_dir, monkeypatch, tmp_path):
    """Start a VoiceLoop with config overrides on the PulseAudio test devices."""
    for key, value in pulse.env.items():
        monkeypatch.setenv(key, value)
    loops: list[VoiceLoop] = []

    def _start(yaml_text: str = "", mode: ListenMode | None = None) -> Harness:
        cfg_file = tmp_path / f"config{len(loops)}.yaml"
        cfg_file.write_text(yaml_text)
        ctx = Context(load_config(cfg_file), Paths.from_env())
        assistant = build_assistant(ctx, hear=True, speak=True)
        assistant.registry.preload_pinned()
        events: queue.Queue[Event] = queue.Queue()
        loop = VoiceLoop(ctx.config.audio, assistant, events.put, mode=mode,
                         listen=ctx.config.listen)
        loops.append(loop)
        loop.start()
        # As `sarai run` does once it listens: later full collections (one after every turn,
        # while its answer is heard) skip what is loaded; else each holds the interpreter
        # ~80 ms here, long enough for the speaker's device to run dry.
        memory.settle()
        return Harness(loop, events, pulse)

    yield _start
    for loop in loops:
        loop.stop()
        loop.assistant.registry.close()
    gc.unfreeze()


def spy_block_switches(h: Harness, monkeypatch) -> list[tuple[int, int, bool, bool]]:
    """Every change of the microphone's blocks from now on: (from ms, to ms, the user was
    talking, the speaker's stream was asleep)."""
    switches: list[tuple[int, int, bool, bool]] = []
    set_block_ms = MicSource.set_block_ms

    def spy(mic: MicSource, block_ms: int) -> None:
        if block_ms != mic.block_ms:
            speaker = h.loop.speaker
            switches.append((mic.block_ms, block_ms, h.loop.front.user_talking,
                             speaker is not None and speaker.asleep))
        set_block_ms(mic, block_ms)

    monkeypatch.setattr(MicSource, "set_block_ms", spy)
    return switches


@pytest.fixture
def loopback(pulse):
    """Carry what the speaker plays back into the room (an acoustic echo path)."""
    mod = pulse.loopback()
    yield
    pulse.unload(mod)


def test_always_mode_answers_and_reports_states(voice, make_speech):
    h = voice()
    h.play(make_speech(["Hello, what is your name?"]))
    turn = h.turn()
    assert "name" in turn["transcript"].lower() and turn["reply"]
    states = h.states()
    for s in ("hearing", "thinking", "speaking", "listening"):
        assert s in states, states
    assert states.index("hearing") < states.index("thinking") < states.index("speaking")


def test_muted_hears_nothing_until_unmuted(voice, make_speech):
    h = voice(mode=ListenMode.MUTED)
    assert h.loop.state is State.MUTED
    h.play(make_speech(["Are you listening to me?"]))
    h.no_turn(4)
    h.loop.set_mode(ListenMode.ALWAYS)
    h.play(make_speech(["Hello, what is your name?"]))
    assert "name" in h.turn()["transcript"].lower()


def test_push_to_talk_only_while_pushed(voice, make_speech):
    h = voice(mode=ListenMode.PUSH)
    h.play(make_speech(["This should be ignored."]))
    h.no_turn(4)
    h.loop.push(True)
    h.play(make_speech(["Hello, what is your name?"], pause_s=0))
    h.loop.push(False)  # releasing ends the turn without waiting for silence
    assert "name" in h.turn()["transcript"].lower()


def test_wake_phrase_is_required_and_stripped(voice, make_speech):
    h = voice("listen:\n  follow_up_s: 0\n", mode=ListenMode.WAKE)
    h.play(make_speech(["What is the weather like?"]))
    h.no_turn(6)
    h.play(make_speech(["Hey Sarai, what is your name?"]))
    turn = h.turn()
    assert "name" in turn["transcript"].lower()
    assert "sarai" not in turn["transcript"].lower()


def test_barge_in_stops_playback_and_answers_the_new_utterance(voice, make_speech, loopback,
                                                               monkeypatch):
    h = voice("models:\n  omni_fast:\n    max_tokens: 400\n"
              "assistant:\n  spoken_max_sentences: 0\n  spoken_max_s: 0\n")
    # The answer stops in the middle of the user's words: the microphone must not change
    # streams then (what the old stream still holds would be lost from their turn); nor
    # between the turns of this conversation (a switch moves the echo, see _size_blocks).
    switches = spy_block_switches(h, monkeypatch)
    question = make_speech(["Tell me a very long story about a dragon."])
    interruption = make_speech(["Stop. What is your name?"])
    h.play(question)
    h.wait_state(State.SPEAKING, timeout=90)
    # A new echo canceller does not trust what it hears over SARAi for its first seconds.
    time.sleep(ListenSettings().echo_deaf_s + 1.0)
    h.play(interruption)
    first = h.turn()
    assert first["interrupted"] is True
    assert "barge_in_stop" in first["timings"]
    # Nothing limits what is spoken here (so the first answer is long enough to talk over):
    # the second answer may be all of its 400 tokens (SmolLM2 sometimes goes on with the
    # story, ~1,400 characters, over 90 s of speech), and its record comes once it is heard.
    second = h.turn(timeout=300)
    assert "name" in second["transcript"].lower()
    assert not [(a, b) for a, b, talking, _ in switches if talking]
    assert [(a, b) for a, b, _, _ in switches] == [(90, 30)], switches  # small from the 1st answer


def test_microphone_blocks_grow_once_the_conversation_has_gone_quiet(voice, loopback,
                                                                    monkeypatch):
    # Large blocks cost less while only listening, but a change of blocks opens a new stream
    # and moves the microphone's timestamps: they grow only once the speaker's stream has
    # stopped for want of anything to play, not as soon as an answer has been heard.
    monkeypatch.setattr(SpeakerSink, "SLEEP_AFTER_S", 4.0)
    h = voice()
    h.wait_state(State.LISTENING)
    switches = spy_block_switches(h, monkeypatch)
    h.loop.ask("Say hello in five words.")
    h.turn()
    assert [(a, b) for a, b, _, _ in switches] == [(90, 30)]  # the answer was on small blocks
    assert wait_until(lambda: len(switches) == 2, timeout=30), switches
    a, b, _, asleep = switches[1]
    assert (a, b, asleep) == (30, 90, True), switches


def test_does_not_answer_itself_through_the_room(voice, loopback):
    h = voice("listen:\n  barge_in: true\n")
    h.wait_state(State.LISTENING)
    rec = h.loop.ask("Tell me about the sea and the sky in three sentences.")
    assert rec.reply and "first_audio" in rec.timings
    h.turn()  # the typed turn itself
    # Its own voice came back through the loopback; none of it may become a turn.
    h.no_turn(6)
    assert h.loop.turns == 1


def test_half_duplex_ignores_what_it_hears_while_speaking(voice, loopback):
    h = voice("listen:\n  barge_in: false\n")
    h.wait_state(State.LISTENING)
    h.loop.ask("Please say something about the sea.")
    h.turn()
    h.no_turn(5)
    assert h.loop.turns == 1


def test_spanish_turn_is_answered_in_spanish_with_a_spanish_voice(voice, make_speech):
    h = voice()  # the shipped configuration: English and Spanish without any setting
    h.play(make_speech(["Buenos días, ¿qué tiempo hace hoy en Madrid?"], voice="es-419",
                        speed=120))
    turn = h.turn()
    assert turn["language"] == "es"
    assert "tiempo" in turn["transcript"].lower()
    assert turn["reply"] and "first_audio" in turn["timings"]
    assert h.loop.assistant.voices.voice("es").name == "espeak-ng:es"


def test_forget_that_clears_the_memory(voice, make_speech):
    h = voice()
    h.play(make_speech(["Hello, what is your name?"]))
    h.turn()
    assert len(h.loop.assistant.memory) == 1
    h.play(make_speech(["Forget that."]))
    turn = h.turn()
    assert "forget" in turn["reason"], turn
    assert len(h.loop.assistant.memory) == 0


def test_microphone_that_goes_away_is_retried_and_comes_back(models_dir, monkeypatch, tmp_path,
                                                             make_speech):
    server = PrivatePulse(Path(tempfile.mkdtemp(prefix="sarai-pa-")) / "native")
    server.start()
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen:\n  device_retry_s: 0.5\n")
    ctx = Context(load_config(cfg), Paths.from_env())
    assistant = build_assistant(ctx, hear=True, speak=True)
    events: queue.Queue[Event] = queue.Queue()
    loop = VoiceLoop(ctx.config.audio, assistant, events.put, listen=ctx.config.listen)
    loop.start()
    h = Harness(loop, events, None)
    try:
        h.wait_state(State.LISTENING)
        server.kill()
        h.wait_state(State.ERROR, timeout=30)
        h.no_turn(0.5)
        messages = [e.data.get("message") or "" for e in h.seen if e.kind is EventKind.STATE]
        assert any("microphone" in m and "retrying" in m for m in messages), messages
        assert loop.wait(timeout=1) is False  # still running
        server.start()
        h.wait_state(State.LISTENING, timeout=30)
        server.play(make_speech(["Hello, what is your name?"]))
        assert "name" in h.turn()["transcript"].lower()
    finally:
        loop.stop()
        assistant.registry.close()
        server.kill()


def test_no_microphone_at_start_waits_when_asked(models_dir, monkeypatch, tmp_path):
    """Started before the sound server (a service that comes up first at login): it waits
    in the error state, and listens once the server is there."""
    server = PrivatePulse(Path(tempfile.mkdtemp(prefix="sarai-pa-")) / "native")
    monkeypatch.setenv("PULSE_SERVER", server.env["PULSE_SERVER"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen:\n  device_retry_s: 0.5\n")
    ctx = Context(load_config(cfg), Paths.from_env())
    assistant = build_assistant(ctx, hear=False, speak=False)
    events: queue.Queue[Event] = queue.Queue()
    loop = VoiceLoop(ctx.config.audio, assistant, events.put, listen=ctx.config.listen)
    with pytest.raises(AudioError, match="no microphone available|cannot open the microphone"):
        loop.start()
    loop.start(wait_for_device=True)
    try:
        time.sleep(1.5)
        assert loop.state is State.ERROR
        assert loop.mic_errors >= 1
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        server.start()
        deadline = time.monotonic() + 30
        while loop.state is not State.LISTENING and time.monotonic() < deadline:
            time.sleep(0.1)
        assert loop.state is State.LISTENING
    finally:
        loop.stop()
        if server.proc is not None:
            server.kill()


@pytest.mark.parametrize("lang", ["en", "es"])
def test_recorded_speech_with_pauses_is_one_turn_in_its_language(voice, recordings, lang):
    """A person reading a few sentences (Asterisk's prompts, recorded speech with pauses of
    0.26-0.48 s between sentences): one turn, heard in its language, answered in it."""
    wav = PROMPTS[lang] / "confbridge-mute-extended.wav"
    h = voice()  # the shipped configuration hears both languages
    h.play(wav)
    turn = h.turn()
    h.no_turn(4)
    assert turn["language"] == lang
    # The whole reading, not its first sentence.
    assert turn["audio_s"] > 0.8 * read_audio(wav).duration_s, turn
    assert turn["reply"] and "first_audio" in turn["timings"]


def test_next_prompt_is_read_while_the_answer_is_spoken(voice, make_speech, monkeypatch):
    """The remembered conversation goes into the model's prompt cache as soon as the reply is
    written, before the turn is over (a quick follow-up does not wait for it)."""
    h = voice()
    registry, loop = h.loop.assistant.registry, h.loop
    finished_then: list[int] = []  # turns finished when each prompt was sent
    spy = StreamSpy(registry, on_call=lambda: finished_then.append(loop.turns))
    monkeypatch.setattr(registry, "backend", spy.backend)
    monkeypatch.setattr(registry, "borrow", spy.borrow)

    def primed() -> list[tuple[int, bool]]:  # (turns finished, reply in the prompt)
        return [(done, any(role == "assistant" for role, _ in messages))
                for (messages, max_tokens), done in zip(spy.calls, finished_then, strict=False)
                if max_tokens == 1]

    h.play(make_speech(["Tell me a short story about a dragon."]))
    turn = h.turn()
    assert turn["reply"]
    assert (0, True) in primed(), primed()  # primed with this exchange before the turn ended
    assert wait_until(lambda: not loop.speaker.playing)
    count = len(primed())
    h.no_turn(2)
    assert len(primed()) == count  # and not read a second time after it
