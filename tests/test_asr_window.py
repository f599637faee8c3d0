"""Short turns are decoded on a Whisper window sized to them; long ones on the full 30 s."""

import numpy as np
import pytest
from recordings import PROMPTS

from sarai.audio.asr import Transcriber
from sarai.audio.pcm import read_audio
from sarai.audio.settings import AsrSettings
from sarai.audio.short_window import WindowPlan, _repeats, _started_over
from sarai.models import starter


def _transcriber(models_dir, **kw) -> Transcriber:
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    return Transcriber(AsrSettings(**kw), dirs)


@pytest.fixture(scope="module")
def fitted(models_dir):
    return _transcriber(models_dir)


@pytest.fixture(scope="module")
def full(models_dir):
    return _transcriber(models_dir, fit_window=False)


def test_window_grows_with_the_utterance_and_gives_way_to_the_full_window():
    plan = WindowPlan(min_window_s=10, margin_s=2)
    assert plan.window_s(1.5) == 10
    assert plan.window_s(12.3) == 15  # the speech plus its margin, rounded up
    assert plan.window_s(28.5) is None  # too close to 30 s: the ordinary path


def test_loops_are_recognised():
    assert _repeats([5, 1, 2, 1, 2, 1, 2])
    assert _repeats([9, 9, 9])
    assert not _repeats([1, 2, 3, 4, 5, 6, 1, 2, 3])
    assert _repeats([7, 1, 2, 3, 4, 5, 8, 1, 2, 3, 4])  # starting over: a 4-gram twice


def test_a_single_restart_after_a_clause_is_cut_off():
    stop = 0  # the token that ends a clause ("." or ",")
    ends = stop.__eq__
    # "Press 3 to re-record your message. Press 3 to re-record"
    assert _started_over([1, 2, 3, 4, 5, stop, 1, 2, 3], ends) == 6
    # "…no call on that extension. Please try again. Please try again."
    assert _started_over([7, 8, 9, stop, 1, 2, stop, 1, 2, stop], ends) == 7
    # Not after the end of a clause: a repetition inside speech is no restart.
    assert _started_over([1, 2, 3, 4, 5, 1, 2, 3], ends) is None
    # More than one restart ("I'm your host, I'm your host, I'm your host, I") is left
    # whole here; the caller's loop check still sees the repeats in what is before it.
    k = _started_over([1, 2, 3, stop, 1, 2, 3, stop, 1, 2, 3, stop, 1], ends)
    assert k == 8 and _repeats([1, 2, 3, stop, 1, 2, 3, stop])
    # Nothing said again.
    assert _started_over([1, 2, 3, stop, 4, 5, 6], ends) is None


SENTENCES = [
    "What is the capital of France?",
    "Good morning, I feel a bit tired today.",
    "Can you tell me a joke about computers?",
    "Set a timer for ten minutes please.",
    "Why is the sky blue?",
    "I had a really rough day at work.",
    "Thanks a lot, you are amazing.",
    "How far away is the moon from the earth?",
]


def _recall(said: str, heard: str) -> float:
    words = [w.strip(",.?!").lower() for w in said.split()]
    got = {w.strip(",.?!").lower() for w in heard.split()}
    return sum(w in got for w in words) / len(words)


def test_short_window_hears_as_much_as_the_full_window(fitted, full, make_speech):
    # One espeak-ng sentence can flip either way between windows; over a set, the fitted
    # window must recognise the spoken words as well as the 30 s one does.
    fast = slow = 0.0
    for text in SENTENCES:
        samples = read_audio(make_speech([text], speed=150)).samples
        fast += _recall(text, fitted.transcribe(samples).text)
        slow += _recall(text, full.transcribe(samples).text)
    fast, slow = fast / len(SENTENCES), slow / len(SENTENCES)
    assert fast >= slow - 0.05, (fast, slow)
    assert fast >= 0.8


def test_spanish_turn_on_a_short_window_with_language_detection(models_dir, make_speech):
    t = _transcriber(models_dir, language="auto")
    wav = make_speech(["Cuéntame algo interesante sobre los volcanes."], voice="es", speed=150)
    tr = t.transcribe(read_audio(wav).samples)
    assert tr.model == "whisper-base"
    assert tr.language == "es"
    text = tr.text.lower()
    assert "interesante" in text and "sobre" in text


def test_a_decoder_that_starts_over_keeps_the_short_window(fitted, recordings, caplog):  # noqa: ARG001
    """On this 2.6 s recording tiny.en says the sentence and starts it again ("…as dialed.
    Your call cannot be completed"); the words before the restart are the transcript, not a
    second decode on the 30 s window (about four times the cost)."""
    caplog.set_level("DEBUG", "sarai.audio.asr")
    tr = fitted.transcribe(read_audio(PROMPTS["en"] / "cannot-complete-as-dialed.wav").samples)
    assert tr.text == "Your call cannot be completed as dialed.", tr
    assert "looped" not in caplog.text


def test_silence_decodes_to_little_or_nothing(fitted):
    tr = fitted.transcribe(np.zeros(16000 * 2, np.int16))
    assert len(tr.text.split()) <= 3
