"""The end of a turn: Smart Turn v3.2 (real ONNX model) beside the words, on recorded speech.

The core tests drive the conversation in virtual time (tests/harness_parts.py: Whisper and the
language models are stand-ins, so a transcript can be made to read as finished where Whisper
would put a full stop at a pause); the model and the recordings are real. The last test runs
`sarai bench turn`'s simulation on Asterisk's read prompts with their natural pauses, through
the real Whisper setup and Smart Turn, and checks the shipped way of deciding.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness_parts import make_harness, silence
from recordings import PROMPTS

from sarai.audio.errors import AudioError
from sarai.audio.pcm import read_audio
from sarai.audio.smart_turn import SmartTurn
from sarai.daemon.cli.bench_turn import speech_span
from sarai.models import starter

# Allison reading "To listen to your messages, press 1 now. …": cut after "messages" the
# words may read as finished, but the voice is plainly going on.
PROMPT = "vm-instructions"
CUT_S = 1.98


@pytest.fixture(scope="module")
def smart_turn(models_dir) -> SmartTurn:
    return SmartTurn(starter.CATALOGUE["smart-turn-v3.2"].path(models_dir))


def _prompt() -> np.ndarray:
    a = read_audio(PROMPTS["en"] / f"{PROMPT}.wav").samples
    on, off = speech_span(a)
    return a[on:off]


def test_the_model_hears_a_finished_turn_from_one_that_goes_on(smart_turn):
    a = _prompt()
    lead, tail = silence(0.3), silence(0.15)
    done = smart_turn.probability(np.concatenate([lead, a, tail]))
    going_on = smart_turn.probability(np.concatenate([lead, a[: int(CUT_S * 16000)], tail]))
    assert done > 0.7, done
    assert going_on < 0.1, going_on
    # float32 input gives the same answer as int16
    f32 = np.concatenate([lead, a, tail]).astype(np.float32) / 32768
    assert smart_turn.probability(f32) == pytest.approx(done, abs=1e-4)


def _first_answer_ms(tmp_path, audio: np.ndarray, text: str, **kw) -> float:
    h = make_harness(tmp_path, **kw)
    h.core.assistant.transcriber.learn(audio, text)
    h.feed(np.concatenate([silence(0.3), audio]))
    turn = h.probe.turn(60)
    assert turn["transcript"] == text
    return turn["timings"]["first_answer_audio"]


def test_a_finished_sentence_that_sounds_finished_ends_at_the_short_silence(tmp_path,
                                                                           smart_turn):
    ms = _first_answer_ms(tmp_path, _prompt(), "To listen to your messages, press 1 now.",
                          end_of_turn=smart_turn)
    assert 550 <= ms <= 670, ms  # listen.complete_silence_ms, then a frame and the device


def test_a_full_stop_at_a_pause_that_sounds_unfinished_waits_for_the_full_silence(
        tmp_path, smart_turn):
    """Whisper often puts a full stop at a pause in the middle of a sentence; the words
    alone would end the turn there, the sound does not."""
    cut = _prompt()[: int(CUT_S * 16000)]
    words_only = _first_answer_ms(tmp_path, cut, "To listen to your messages.")
    with_sound = _first_answer_ms(tmp_path, cut, "To listen to your messages.",
                                  end_of_turn=smart_turn)
    assert 550 <= words_only <= 670, words_only
    assert 700 <= with_sound <= 820, with_sound  # audio.vad.end_silence_ms


class _Broken:
    def probability(self, samples):  # noqa: ARG002
        raise RuntimeError("onnxruntime: bad input")


def test_a_failing_model_leaves_the_words_to_decide(tmp_path, caplog):
    ms = _first_answer_ms(tmp_path, _prompt(), "To listen to your messages, press 1 now.",
                          end_of_turn=_Broken())
    assert 550 <= ms <= 670, ms
    assert "end-of-turn model failed" in caplog.text


def test_a_missing_or_broken_model_file_is_one_clear_sentence(tmp_path):
    with pytest.raises(AudioError, match="end-of-turn model not found.*sarai setup"):
        SmartTurn(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(AudioError, match="cannot load end-of-turn model bad.onnx"):
        SmartTurn(bad)


def test_read_speech_with_natural_pauses_is_not_cut_and_ends_sooner(models_dir, recordings):  # noqa: ARG001
    """40 prompts of ten words or more per language, with their natural pauses between
    sentences (0.15-0.48 s), the real Whisper setup and Smart Turn at every pause: the words
    and the sound together cut at most 2 turns in 100, and end finished turns well before the
    full silence. (SARAi then also waits for the answer's first sound, which can only spare
    more pauses; `sarai bench turn --with-compute` times it.)"""
    from sarai.audio.asr import Transcriber
    from sarai.daemon.cli.bench_turn import (
        BOTH,
        Checks,
        build_turns,
        evaluate,
        listen,
        policies,
    )
    from sarai.daemon.config import load_config

    cfg = load_config(None)
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    asr = Transcriber(cfg.audio.asr, dirs)
    checks = Checks(asr.transcribe,
                    SmartTurn(starter.CATALOGUE["smart-turn-v3.2"].path(models_dir)),
                    cfg.audio.vad, cfg.listen.speculate_pause_ms, cfg.listen.turn_model_threshold)
    ways = policies(cfg)
    rng = np.random.default_rng(3)
    for lang in ("en", "es"):
        turns = build_turns(lang, limit=40, seed=3, min_words=10)
        assert len(turns) == 40
        pauses = [e for t in turns for e in listen(t, checks, rng)]
        assert sum(e.kind == "natural" for e in pauses) >= 15  # there were pauses to cut at
        shipped = evaluate(pauses, ways[BOTH])
        silence_only = evaluate(pauses, ways["silence only"])
        assert shipped["turns"] == 40
        assert shipped["cuts_per_100"] <= 2.0, (lang, shipped)
        # 550 ms of silence instead of 700 (listen.complete_silence_ms): 150 ms sooner.
        assert shipped["delay_ms"]["p50"] <= silence_only["delay_ms"]["p50"] - 125, \
            (lang, shipped, silence_only)


def test_the_shipped_way_ends_a_turn_when_its_answer_has_a_sound_and_never_after_the_silence():
    """`sarai bench turn --with-compute`'s model of the shipped way: from 550 ms on, at the
    answer's first sound (timed from the 150 ms pause), and at the 700 ms full silence in any
    case; a pause the checks do not take for an end waits for the full silence."""
    from sarai.daemon.cli.bench_turn import BOTH, SHIPPED, Pause, policies
    from sarai.daemon.config import load_config

    cfg = load_config(None)
    ways = policies(cfg, compute=True)

    def pause(answer_ms: float | None, words: bool = True, p: float = 0.9) -> Pause:
        return Pause("t", "en", "sentence", 500.0, words, p, 200.0, 90.0, 0.0, "Hi there.",
                     answer_ms)

    assert ways[SHIPPED](pause(100.0)) == 550  # ready before 550 ms: the early end itself
    assert ways[SHIPPED](pause(450.0)) == 600  # ready 600 ms after the last word
    assert ways[SHIPPED](pause(900.0)) == 700  # later than the full silence
    assert ways[SHIPPED](pause(None)) == 700  # no sound at all: not timed, the full silence
    assert ways[SHIPPED](pause(100.0, words=False)) == 700
    assert ways[SHIPPED](pause(100.0, p=0.1)) == 700
    assert ways[BOTH](pause(900.0)) == 550  # the checks alone: ready at 150 + 200 ms
    assert SHIPPED not in policies(cfg)  # without the answers timed there is nothing to say
