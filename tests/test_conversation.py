"""The conversation core driven frame by frame in virtual time, without sound devices.

The microphone is fed espeak-ng speech one VAD frame at a time through the real front end
(webrtcvad, echo removal, barge-in detection); the speaker plays in the same virtual time and
can echo back into the microphone. Whisper and the language models are stand-ins
(tests/harness_parts.py), so every run gives the same result: each scenario is checked for
that too, twenty times in a row.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref

import numpy as np
import pytest
from harness_parts import ScriptedModels, kept_levels, make_harness, silence, spoken
from recordings import PROMPTS

from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.speech_corpus import asterisk_texts
from sarai.daemon.config import ListenSettings
from sarai.daemon.conversation.requests import MediaRef, RequestError, typed
from sarai.daemon.events import ListenMode

STORY = ("Once upon a time a dragon lived in the mountains above a quiet village. "
         "Every morning it flew over the river and counted the boats below. "
         "One day a girl climbed all the way up to ask it why it never came down.")


def _say(h, tmp, text: str, *, learn: str | None = None, voice: str = "en-us") -> np.ndarray:
    audio = spoken(text, tmp, voice)
    h.core.assistant.transcriber.learn(audio, learn or text)
    return audio


def _turn_phases(h) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for ev in h.probe.seen:
        if ev.kind.value == "phase":
            out.setdefault(ev.data["turn"], []).append(ev.data["phase"])
    return out


def _say_in_two(h, tmp, first: str, rest: str, pause_s: float) -> float:
    """Say `first`, pause, say `rest` (one turn, its whole text learnt); when it ended."""
    whole = np.concatenate([_say(h, tmp, first), silence(pause_s), spoken(rest, tmp)])
    h.core.assistant.transcriber.learn(whole, f"{first} {rest}")
    h.feed(np.concatenate([silence(0.3), whole]))
    return h.now


# --- the scenarios (each returns a summary that must be the same on every run) -------------

def speculation_dropped_when_the_user_goes_on(tmp):
    h = make_harness(tmp)
    ended = _say_in_two(h, tmp, "I was thinking about the weather",
                        "and the rain we will have tomorrow.", 0.3)
    h.probe.turn(30)
    h.probe.no_turn(1.0)
    turns = h.probe.turns()
    phases = _turn_phases(h)
    heard_early = len(h.speaker.heard_between(0, ended))
    return {"turns": [(t["transcript"], t["outcome"]) for t in turns],
            "phases": sorted(phases.values()), "heard_before_end": heard_early,
            "heard": len(h.speaker.heard) > 0}


def finished_sentence_then_more(tmp, pause_s: float, think_s: float):
    """A finished question, a pause long enough for an early end, then more of the same turn;
    the answer takes `think_s` to start after the speculative start."""
    h = make_harness(tmp, models=ScriptedModels(think_s=think_s))
    ended = _say_in_two(h, tmp, "What time is it?", "And will it rain in the evening?", pause_s)
    h.probe.turn(30)
    h.probe.no_turn(2.0)
    return {"turns": [(t["transcript"], t["outcome"]) for t in h.probe.turns()],
            "phases": sorted(_turn_phases(h).values()),
            "heard_before_end": len(h.speaker.heard_between(0, ended))}


def held_audio_released_at_the_end(tmp, text: str, think_s: float = 0.0):
    h = make_harness(tmp, models=ScriptedModels(think_s=think_s))
    h.feed(np.concatenate([silence(0.3), _say(h, tmp, text)]))
    turn = h.probe.turn(30)
    return {"transcript": turn["transcript"], "phases": _turn_phases(h)[turn["id"]],
            "first_answer_audio": turn["timings"]["first_answer_audio"]}


def barge_in_pause_resume_interrupt(tmp):
    h = make_harness(tmp, models=ScriptedModels(reply=lambda q: STORY if "story" in q
                                                else f"You said {q}"))
    fut = h.core.ask(typed("Tell me a story about a dragon."))
    h.core.pump()
    h.silence(1.5)
    assert h.speaker.playing
    paused_seen = []
    cough = spoken("Ha.", tmp)[:1440]  # 90 ms of voice: a cough, not a turn
    h.feed(cough, on_frame=lambda: paused_seen.append(h.speaker.queue.paused))
    h.silence(0.6)
    resumed = h.speaker.playing and not h.speaker.queue.paused
    interruption = _say(h, tmp, "Stop. What is your name?")
    h.feed(interruption)
    first = h.probe.turn(30)
    second = h.probe.turn(30)
    return {"paused_for_cough": any(paused_seen), "resumed": resumed,
            "first": (first["transcript"], first["outcome"], first["interrupted"],
                      "barge_in_stop" in first["timings"]),
            "second": second["transcript"], "asked": fut.done()}


def own_echo_is_not_the_user(tmp):
    h = make_harness(tmp, echo_gain=0.8, echo_delay_s=0.06,
                     models=ScriptedModels(reply=lambda q: STORY))
    h.core.ask(typed("Tell me a story about a dragon."))
    h.core.pump()
    paused: list[bool] = []
    h.feed(silence(12.0), on_frame=lambda: paused.append(h.speaker.queue.paused))
    h.probe.turn(60)
    h.probe.no_turn(3.0)
    turns = h.probe.turns()
    return {"turns": [(t["transcript"], t["outcome"]) for t in turns],
            "paused_frames": sum(paused),
            "heard_s": round(sum(len(b) for _, b in h.speaker.heard) / 16000)}


def late_echo_of_its_last_words(tmp, heard_as: str):
    """The room gives SARAi's voice back 1.2 s late (past the 0.6 s the echo window allows):
    the end of its answer reaches the microphone after it stopped, and the transcriber hears
    `heard_as` in it. (Half duplex, so that the late echo of the rest of the answer is not
    taken for the user talking over it.)"""
    h = make_harness(tmp, yaml="listen:\n  barge_in: false\n", echo_gain=0.8,
                     echo_delay_s=1.2,
                     models=ScriptedModels(reply=lambda q: "The sea is blue. Good night."))
    h.core.assistant.transcriber.learn(silence(1.0), heard_as)
    h.core.ask(typed("Tell me about the sea."))
    h.core.pump()
    h.feed(silence(8.0))
    h.silence(3.0)
    return {"turns": [(t["transcript"], t["outcome"]) for t in h.probe.turns()]}


def recorded_question_in_a_silent_room(tmp):  # noqa: ARG001
    """A recorded question (a person's voice, with the line's faint noise between the words)
    right after the microphone opens, in a digitally silent room (a null sink), then a long
    answer: what the segmenter hears under the answer is the room, never the quiet moments of
    the question replayed."""
    h = make_harness(tmp, models=ScriptedModels(reply=lambda q: STORY))
    question = read_audio(PROMPTS["en"] / "conf-usermenu.wav").samples  # 14 s
    h.core.assistant.transcriber.learn(question, asterisk_texts("en")["conf-usermenu"])
    h.feed(np.concatenate([silence(0.3), question]))
    h.feed(silence(30.0))
    h.probe.turn(30)
    h.probe.no_turn(3.0)
    return {"turns": [(t["transcript"], t["outcome"]) for t in h.probe.turns()],
            "heard_s": round(sum(len(b) for _, b in h.speaker.heard) / 16000)}


SCENARIOS = {
    "speculation": speculation_dropped_when_the_user_goes_on,
    "held": lambda tmp: held_audio_released_at_the_end(tmp, "What is your name?"),
    "went_on": lambda tmp: finished_sentence_then_more(tmp, 0.55, 0.6),
    "barge_in": barge_in_pause_resume_interrupt,
    "echo": own_echo_is_not_the_user,
    "silent_room": recorded_question_in_a_silent_room,
}


# --- the tests ----------------------------------------------------------------------------

def test_a_speculative_start_is_dropped_when_the_user_goes_on(tmp_path):
    s = speculation_dropped_when_the_user_goes_on(tmp_path)
    assert s["turns"] == [("I was thinking about the weather and the rain we will have "
                           "tomorrow.", "done")]
    # The first pause started an answer that was dropped; the last one became the turn.
    assert ["heard", "speculating", "dropped"] in s["phases"]
    assert ["heard", "speculating", "answering", "speaking", "done"] in s["phases"]
    assert s["heard_before_end"] == 0  # nothing of the dropped answer was ever heard
    assert s["heard"]


def test_held_audio_plays_at_once_when_the_pause_was_the_end(tmp_path):
    s = held_audio_released_at_the_end(tmp_path, "What is your name?")
    assert s["transcript"] == "What is your name?"
    assert s["phases"] == ["heard", "speculating", "answering", "speaking", "done"]
    # A finished question ends at complete_silence_ms (550) of silence; the answer was
    # ready by then, so it is heard one frame and the device latency later.
    assert 550 <= s["first_answer_audio"] <= 670, s


def test_a_finished_sentence_ends_the_turn_when_its_answer_is_ready(tmp_path):
    # The answer starts 450 ms after the speculative start (at 150 ms of silence): the turn
    # ends then, not at complete_silence_ms, and not at the full 700 ms either.
    s = held_audio_released_at_the_end(tmp_path, "What is your name?", think_s=0.45)
    assert s["phases"] == ["heard", "speculating", "answering", "speaking", "done"]
    assert 600 <= s["first_answer_audio"] <= 690, s
    # Slower than the full silence: the full silence ends it, and the answer plays when ready.
    s = held_audio_released_at_the_end(tmp_path, "What is your name?", think_s=0.9)
    assert s["phases"] == ["heard", "speculating", "answering", "speaking", "done"]
    assert 1050 <= s["first_answer_audio"] <= 1190, s


def test_going_on_before_the_answer_is_ready_keeps_one_turn(tmp_path):
    """A pause after a finished sentence that outlasts complete_silence_ms, but not the time
    the answer takes to start: the user who goes on is not cut off."""
    s = finished_sentence_then_more(tmp_path, pause_s=0.65, think_s=0.6)
    assert s["turns"] == [("What time is it? And will it rain in the evening?", "done")], s
    assert ["heard", "speculating", "dropped"] in s["phases"]
    assert s["heard_before_end"] == 0
    # An answer that is ready when the pause has lasted complete_silence_ms ends the turn
    # there, and is heard: what follows is not part of it.
    s = finished_sentence_then_more(tmp_path, pause_s=0.65, think_s=0.0)
    assert s["turns"][0][0] == "What time is it?", s
    assert s["heard_before_end"] > 0


def test_a_phrase_that_trails_off_waits_for_the_full_silence(tmp_path):
    s = held_audio_released_at_the_end(tmp_path, "I was thinking that")
    assert 700 <= s["first_answer_audio"] <= 820, s


def test_barge_in_pauses_resumes_on_a_cough_and_interrupts_on_speech(tmp_path):
    s = barge_in_pause_resume_interrupt(tmp_path)
    assert s["paused_for_cough"] and s["resumed"]
    assert s["first"] == ("Tell me a story about a dragon.", "interrupted", True, True)
    assert s["second"] == "Stop. What is your name?"
    assert s["asked"]


def test_its_own_echo_is_not_taken_for_the_user(tmp_path):
    s = own_echo_is_not_the_user(tmp_path)
    assert s["turns"] == [("Tell me a story about a dragon.", "done")]
    # Not even paused for a moment: its own voice never looked like the user talking over it.
    assert s["paused_frames"] == 0
    assert s["heard_s"] >= 8  # the whole answer was heard


def test_the_echo_still_arriving_after_a_pause_does_not_confirm_a_barge_in(tmp_path):
    """Nothing cancels SARAi's voice here and it comes back 0.12 s late: each time it looks
    like the user and SARAi pauses, what the room sends back after the pause is the echo of
    the words heard before it, not the user, so the answer goes on and is heard whole."""
    h = make_harness(tmp_path, yaml="listen:\n  echo_cancel: off\n", echo_gain=0.8,
                     echo_delay_s=0.12, models=ScriptedModels(reply=lambda q: STORY))
    h.core.ask(typed("Tell me a story about a dragon."))
    h.core.pump()
    paused: list[bool] = []
    h.feed(silence(12.0), on_frame=lambda: paused.append(h.speaker.queue.paused))
    turn = h.probe.turn(120)
    assert (turn["transcript"], turn["outcome"]) == ("Tell me a story about a dragon.", "done")
    assert sum(paused) > 0  # its voice did look like the user talking over it


def test_a_short_stop_over_an_answer_in_a_room_stops_it(tmp_path):
    """"Stop." over an answer that comes back through the room: SARAi pauses at its first
    syllable, and what is left of the word once the answer's echo has passed confirms it,
    with what was held while that echo was in flight. The answer does not resume over the
    user, and their next words reach the turn whole, quiet ones included."""
    h = make_harness(tmp_path, echo_gain=0.8, echo_delay_s=0.06,
                     models=ScriptedModels(reply=lambda q: STORY if "story" in q
                                           else f"You said {q}"))
    h.core.ask(typed("Tell me a story about a dragon."))
    h.core.pump()
    h.silence(ListenSettings().echo_deaf_s + 1.0)  # a new canceller is deaf at first
    assert h.speaker.playing
    transcriber = h.core.assistant.transcriber
    stop = spoken("Stop.", tmp_path)
    question = spoken("What is your name?", tmp_path)
    gap = silence(0.35)
    transcriber.learn(np.concatenate([stop, gap, question]), "Stop. What is your name?")
    sounding: list[bool] = []
    h.feed(np.concatenate([stop, gap, question]),
           on_frame=lambda: sounding.append(h.speaker.playing and not h.speaker.queue.paused))
    first = h.probe.turn(30)
    assert (first["outcome"], first["interrupted"]) == ("interrupted", True)
    went_quiet = sounding.index(False)
    assert not any(sounding[went_quiet:])  # it paused at "Stop" and never went on
    assert went_quiet * 0.03 < 0.3
    assert h.probe.turn(30)["transcript"] == "Stop. What is your name?"
    # From 0.3 s in (SARAi paused and its echo passed), every voiced 10 ms of what was said
    # is in the turn, at about the level it was said.
    said = np.concatenate([stop, gap, question])[int(0.3 * SAMPLE_RATE):]
    kept = kept_levels(said, transcriber.heard[-1])
    assert kept.min() > 0.25, kept.round(2)  # the canceller shapes it a little, no more


def test_its_own_last_words_coming_back_late_are_not_a_turn(tmp_path, caplog):
    caplog.set_level(logging.INFO, "sarai.daemon.conversation.core")
    s = late_echo_of_its_last_words(tmp_path, "Good night.")
    assert s["turns"] == [("Tell me about the sea.", "done")]
    assert "SARAi's own last words came back" in caplog.text
    # What it checks is the words: anything else heard there is the user's turn.
    s = late_echo_of_its_last_words(tmp_path, "What time is it?")
    assert s["turns"][:2] == [("Tell me about the sea.", "done"), ("What time is it?", "done")]


def test_the_quiet_moments_of_a_question_are_not_replayed_under_the_answer(tmp_path, caplog):
    caplog.set_level(logging.INFO, "sarai.daemon.conversation.frontend")
    s = recorded_question_in_a_silent_room(tmp_path)
    assert s["turns"] == [(asterisk_texts("en")["conf-usermenu"], "done")]
    assert s["heard_s"] >= 8
    # Under the answer the segmenter heard the silent room: no speech at all, not even
    # stretches it then set aside as heard during the answer.
    assert "heard during the answer" not in caplog.text


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_gives_the_same_result_twenty_times(tmp_path, name):
    first = SCENARIOS[name](tmp_path)
    for _ in range(19):
        assert SCENARIOS[name](tmp_path) == first


def test_wake_mode_needs_the_phrase_then_follows_up_without_it(tmp_path):
    h = make_harness(tmp_path, mode=ListenMode.WAKE)
    h.feed(np.concatenate([silence(0.3), _say(h, tmp_path, "What is the weather like?")]))
    h.silence(2.0)
    assert h.probe.turns() == []
    assert ["heard", "speculating", "answering", "dropped"] in _turn_phases(h).values() or \
        ["heard", "speculating", "dropped"] in _turn_phases(h).values()
    h.feed(_say(h, tmp_path, "Hey Sarai, what is your name?"))
    assert h.probe.turn(30)["transcript"] == "what is your name?"
    h.feed(_say(h, tmp_path, "And how old are you?"))
    assert h.probe.turn(30)["transcript"] == "And how old are you?"


def test_push_to_talk_hears_only_while_pushed_and_release_ends_the_turn(tmp_path):
    h = make_harness(tmp_path, mode=ListenMode.PUSH)
    h.feed(np.concatenate([silence(0.3), _say(h, tmp_path, "This should be ignored.")]))
    h.silence(1.5)
    assert h.probe.turns() == []
    h.core.push(True)
    h.core.pump()
    h.feed(np.concatenate([silence(0.3), _say(h, tmp_path, "What is your name?")]))
    h.core.push(False)
    h.core.pump()
    turn = h.probe.turn(30)
    assert turn["transcript"] == "What is your name?" and turn["source"] == "push"
    # Releasing ended it at once: no end-of-turn silence was waited for.
    assert turn["timings"]["first_answer_audio"] < 300


def test_a_typed_turn_during_a_spoken_one_keeps_each_to_its_own(tmp_path):
    asked = []
    models = ScriptedModels(reply=lambda q: f"About {q.rstrip('?.').lower()}. " * 2)
    h = make_harness(tmp_path, models=models)
    h.feed(np.concatenate([silence(0.3), _say(h, tmp_path, "Where do penguins live?")]))

    def ask_while_speaking() -> None:
        if h.speaker.playing and not asked:
            asked.append(h.core.ask(typed("what is two plus two", speak=False)))

    h.silence(1.0)
    h.feed(silence(3.0), on_frame=ask_while_speaking)
    turns = [h.probe.turn(30), h.probe.turn(30)]
    assert asked and asked[0].done()
    spoken_turn, typed_turn = sorted(turns, key=lambda t: t["source"] != "voice")
    assert spoken_turn["transcript"] == "Where do penguins live?"
    assert "penguins" in spoken_turn["reply"] and "two" not in spoken_turn["reply"]
    assert typed_turn["transcript"] == "what is two plus two"
    assert "two plus two" in typed_turn["reply"] and "penguins" not in typed_turn["reply"]
    assert asked[0].result().reply == typed_turn["reply"]


def test_an_answer_stopped_before_its_work_began_ends_and_the_next_turn_is_answered(tmp_path):
    """The runner is busy (a typed turn, say) when a question ends; SARAi is told to stop
    before the question's job begins. That turn must end (dropped), not stay "thinking"."""
    from sarai.daemon.events import State

    h = make_harness(tmp_path)
    runner = h.core._runner
    busy = [True]
    run = runner.run_pending
    runner.run_pending = lambda: False if busy[0] else run()
    h.feed(np.concatenate([silence(0.3), _say(h, tmp_path, "Where do penguins live?"),
                           silence(1.5)]))
    assert h.state is State.THINKING  # committed, its job still queued
    h.core.interrupt("asked to stop")
    h.core.pump()
    busy[0] = False
    h.silence(0.5)
    assert h.state is State.LISTENING, h.probe.states()
    h.probe.drain()
    first = [p for p in _turn_phases(h).values() if "answering" in p]
    assert first == [["heard", "speculating", "answering", "dropped"]], _turn_phases(h)
    h.feed(_say(h, tmp_path, "What is your name?"))
    turn = h.probe.turn(30)
    assert turn["transcript"] == "What is your name?" and turn["outcome"] == "done"
    assert "name" in turn["reply"]


class _StopAfterSynthesis:
    """The real espeak-ng voice, except that right after synthesising the answer's second
    sentence the user barges in: the speaker is stopped before that audio is played."""

    def __init__(self, h, inner) -> None:
        self._h, self._inner, self.calls = h, inner, 0
        self.sample_rate = inner.sample_rate
        self.name = inner.name
        self.stopped_at: float | None = None

    def voice(self, language=None):  # noqa: ARG002
        return self

    def synthesize(self, text: str) -> np.ndarray:
        audio = self._inner.synthesize(text)
        self.calls += 1
        if self.calls == 2:
            self._h.speaker.stop()  # what a confirmed barge-in does to the speaker
            self.stopped_at = self._h.now
        return audio


def test_nothing_of_a_cancelled_answer_plays_after_a_barge_in_between_synthesis_and_play(
        tmp_path):
    from harness_parts import _Voices

    voices = None
    h = make_harness(tmp_path, models=ScriptedModels(reply=lambda q: STORY))
    voices = _StopAfterSynthesis(h, _Voices().voice())
    h.core.assistant.voices = voices
    h.core.ask(typed("Tell me a story."))
    h.core.pump()
    h.probe.turn(60)
    assert voices.stopped_at is not None
    assert len(h.speaker.heard_between(voices.stopped_at)) == 0


class _SlowVoice:
    """The real espeak-ng voice, taking 0.2 s longer per piece; logs when it works."""

    def __init__(self, inner, log: list) -> None:
        self._inner, self._log = inner, log
        self.sample_rate, self.name = inner.sample_rate, inner.name

    def voice(self, language=None):  # noqa: ARG002
        return self

    def synthesize(self, text: str) -> np.ndarray:
        self._log.append(("synthesising", text))
        time.sleep(0.2)
        audio = self._inner.synthesize(text)
        self._log.append(("synthesised", text))
        return audio


def test_the_model_holds_back_while_the_first_piece_is_synthesised(tmp_path):
    from harness_parts import _Voices

    log: list = []
    def token() -> None:  # a word every 10 ms, as a small model writes on two cores
        log.append(("token", ""))
        time.sleep(0.01)

    models = ScriptedModels(reply=lambda q: STORY, on_chunk=token)
    h = make_harness(tmp_path, models=models)
    h.core.assistant.voices = _SlowVoice(_Voices().voice(), log)
    h.core.ask(typed("Tell me a story."))
    h.core.pump()
    turn = h.probe.turn(60)
    assert turn["reply"].strip() == STORY
    kinds = [k for k, _ in log]
    first = kinds.index("synthesising")
    # Nothing more is written while the first piece is synthesised…
    assert kinds[first + 1] == "synthesised", log[first:first + 4]
    # …and the rest of the reply is written after it, while it plays (not held to the end).
    later = kinds[first + 2:]
    assert "token" in later and later.index("token") < later.index("synthesising")
    assert kinds.count("synthesising") == 3  # the story's three sentences, each spoken

    # A short first piece is over before the next could be ready: the model does not wait.
    log.clear()
    models.reply = lambda q: "Of course! " + STORY
    h.core.ask(typed("Tell me a story."))
    h.core.pump()
    h.probe.turn(60)
    kinds = [k for k, _ in log]
    assert log[kinds.index("synthesising")] == ("synthesising", "Of course!")
    assert kinds[kinds.index("synthesising") + 1] == "token"


def test_what_a_turn_left_in_reference_cycles_is_freed_once_it_is_over(tmp_path):
    """Python frees objects in reference cycles only at a full collection, which a long-lived
    process seldom runs; the core runs one after every turn (automatic collection is off
    here, so nothing else can have freed them)."""

    class Cycle:
        pass

    made: list[weakref.ref] = []

    def chunk() -> None:  # e.g. a replaced microphone stream: its callback refers back to it
        c = Cycle()
        c.me, c.buffer = c, np.zeros(250_000, np.float32)
        made.append(weakref.ref(c))

    h = make_harness(tmp_path, models=ScriptedModels(on_chunk=chunk))
    gc.collect()
    gc.disable()
    try:
        h.core.ask(typed("Hello there, how are you?"))
        h.core.pump()
        h.probe.turn(30)
        assert made and not [r for r in made if r() is not None]
    finally:
        gc.enable()


def test_bad_requests_get_a_reason_and_other_turns_go_on(tmp_path):
    models = ScriptedModels()
    h = make_harness(tmp_path, models=models)
    with pytest.raises(RequestError, match="nothing to ask"):
        typed("   ")
    with pytest.raises(RequestError, match="unknown language 'xx'"):
        typed("hola", language="xx")
    with pytest.raises(RequestError, match="is a directory"):
        typed("hi", output=tmp_path)
    # An attachment removed after it was asked about, before its turn ran.
    from PIL import Image

    picture = tmp_path / "p.png"
    Image.new("RGB", (16, 16), "red").save(picture)
    models.on_chunk = lambda: picture.unlink(missing_ok=True)
    first = h.core.ask(typed("Tell me something.", speak=False))
    second = h.core.ask(typed("what is this?", media=(MediaRef(picture, "image"),),
                              speak=False))
    h.core.pump()
    assert first.result().reply
    rec = second.result()
    assert rec.error and "removed before" in rec.error
    # Muted: a spoken answer is refused with the reason; a printed one is answered.
    h.core.set_mode(ListenMode.MUTED)
    h.core.pump()
    refused = h.core.ask(typed("hello"))
    h.core.pump()
    with pytest.raises(RequestError, match="muted"):
        refused.result(1)
    silent = h.core.ask(typed("hello", speak=False))
    h.core.pump()
    assert silent.result().reply
    # Quitting: refused, and said so.
    h.core.stop()
    with pytest.raises(RequestError, match="shutting down"):
        h.core.ask(typed("hello", speak=False)).result(1)


def test_a_long_answer_is_spoken_only_to_speaking_length_and_kept_whole(tmp_path):
    six = " ".join(f"This is sentence number {n} of the answer." for n in
                   ("one", "two", "three", "four", "five", "six"))
    h = make_harness(tmp_path, yaml="assistant:\n  spoken_max_sentences: 3\n",
                     models=ScriptedModels(reply=lambda q: six))
    fut = h.core.ask(typed("Tell me everything."))
    h.core.pump()
    turn = h.probe.turn(60)
    assert turn["reply"] == six  # the whole reply is in the record…
    assert "number three" in turn["spoken"] and "number four" not in turn["spoken"]
    assert fut.result().reply == six
    assert h.core.assistant.memory.messages()[-1].content == six  # …and in the memory
    heard_s = sum(len(b) for _, b in h.speaker.heard) / 16000
    three = sum(len(h.core.assistant.voices.voice().synthesize(
        f"This is sentence number {n} of the answer.")) for n in ("one", "two", "three"))
    assert heard_s == pytest.approx(three / 22050, abs=0.5)


def test_a_turn_no_tier_could_answer_is_announced_and_apologised_for(tmp_path):
    class Broken(ScriptedModels):
        def stream(self, messages, **kw):
            from sarai.models.errors import ModelError

            if kw.get("max_tokens", 0) > 1:
                raise ModelError("model file not found: /models/gone.gguf")
            return iter(())

    h = make_harness(tmp_path, models=Broken())
    h.core.ask(typed("Hello there."))
    h.core.pump()
    turn = h.probe.turn(30)
    assert "gone.gguf" in turn["error"]
    assert h.state.value == "error" and "gone.gguf" in h.core.view.message
    assert len(h.speaker.heard) > 0  # the short apology was heard
    h.silence(6.0)
    assert h.state.value == "listening"  # …and then it listens again


def test_the_speaker_is_woken_when_the_user_starts_talking(tmp_path):
    """An idle speaker stops its stream (audio.devices.SpeakerSink); the front end wakes it
    as soon as speech begins, so it is ready long before the answer, and again when speech
    stops (the stream stays up a while from then); silence alone wakes nothing."""
    h = make_harness(tmp_path)
    woken: list[float] = []
    h.speaker.wake = lambda: woken.append(h.now)
    h.feed(silence(2.0))
    assert woken == []
    start = h.now
    question = _say(h, tmp_path, "What is your name?")
    h.feed(question)
    assert woken and woken[0] - start < 0.5  # at its start, not at its end
    h.feed(silence(3.0))
    assert len(woken) >= 2 and woken[-1] >= start + 0.8 * len(question) / 16000
    count = len(woken)
    h.feed(silence(3.0))
    assert len(woken) == count
