"""Both languages with the shipped configuration: real Whisper on recorded human speech.

Asterisk's prompts (tests/recordings.py), read by one speaker in US English and in Mexican
Spanish, go through the Transcriber exactly as the shipped configuration sets it up
(`audio.asr.language: auto`): each must come out in its language, from the right model, with
the words that are said in it (sarai.audio.speech_corpus has the prompts' texts).
"""

from __future__ import annotations

import numpy as np
import pytest
from recordings import PROMPTS

from sarai.audio import asr as asr_module
from sarai.audio.asr import Transcriber
from sarai.audio.pcm import read_audio
from sarai.audio.settings import AsrSettings
from sarai.audio.speech_corpus import asterisk_texts, word_recall
from sarai.daemon.config import load_config
from sarai.models import starter

# Prompts of a few seconds, both languages (the same prompts in each).
NAMES = ["vm-instructions", "conf-invalidpin", "conf-getpin", "vm-passchanged",
         "vm-reenterpassword", "conf-onlyperson", "vm-mismatch", "conf-locked"]


@pytest.fixture(scope="module")
def shipped(models_dir) -> Transcriber:
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    t = Transcriber(load_config(None).audio.asr, dirs)
    t.preload()
    return t


def test_the_shipped_configuration_hears_english_and_spanish():
    asr = load_config(None).audio.asr
    assert asr.language == "auto" and set(asr.auto_languages) == {"en", "es"}
    t = Transcriber(asr, {})
    assert t.model_names() == ["whisper-tiny-en", "whisper-base"]  # both preloaded


@pytest.mark.parametrize("lang", ["en", "es"])
def test_recorded_prompts_are_heard_in_their_language_with_their_words(shipped, recordings,  # noqa: ARG001
                                                                       lang):
    texts = asterisk_texts(lang)
    hits = total = 0
    for name in NAMES:
        tr = shipped.transcribe(read_audio(PROMPTS[lang] / f"{name}.wav").samples)
        assert tr.language == lang, (name, tr)
        # English stays on the fast English model; Spanish is decoded by the multilingual one.
        assert tr.model == ("whisper-tiny-en" if lang == "en" else "whisper-base"), (name, tr)
        h, n = word_recall(texts[name], tr.text, lang)
        assert h / n >= 0.5, (name, texts[name], tr.text)
        hits, total = hits + h, total + n
    # Whisper base on 8 kHz Spanish misspells a few words per prompt ("ingrece"); the 0.85
    # goal is measured over a larger set of prompts (README, "Languages").
    assert hits / total >= 0.8, (lang, hits, total)


def test_a_spanish_prompt_says_what_it_says(shipped, recordings):  # noqa: ARG001
    tr = shipped.transcribe(read_audio(PROMPTS["es"] / "vm-instructions.wav").samples)
    text = tr.text.lower()
    assert "mensajes" in text and "cualquier momento" in text, text


def test_forcing_a_language_still_works(models_dir, recordings):  # noqa: ARG001
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    es = Transcriber(AsrSettings(language="es"), dirs)
    tr = es.transcribe(read_audio(PROMPTS["es"] / "conf-getpin.wav").samples)
    assert tr.language == "es" and tr.model == "whisper-base"
    en = Transcriber(AsrSettings(language="en"), dirs)
    tr = en.transcribe(read_audio(PROMPTS["en"] / "conf-getpin.wav").samples)
    assert tr.language == "en" and tr.model == "whisper-tiny-en"
    assert "pin" in tr.text.lower() or "conference" in tr.text.lower(), tr.text


def test_a_long_spanish_turn_on_the_full_window_is_heard_in_spanish(shipped, recordings):  # noqa: ARG001
    """Past the short window (about 28 s) the same rule runs on Whisper's own 30 s windows."""
    parts = [read_audio(PROMPTS["es"] / f"{n}.wav").samples for n in
             ("conf-usermenu", "dir-intro-fn", "vm-instructions")]
    gap = np.zeros(8000, np.int16)
    audio = np.concatenate([p for part in parts for p in (part, gap)])
    assert len(audio) / 16000 > 29
    tr = shipped.transcribe(audio)
    assert tr.language == "es" and tr.model == "whisper-base", tr
    assert "mensajes" in tr.text.lower(), tr.text


def test_a_loop_on_the_english_model_is_not_taken_for_english(shipped, recordings):  # noqa: ARG001
    """On this 17 s Spanish reading the English model loops with confidence ("Hello, I am
    your host…" over and over); the multilingual model's language guess must decide."""
    tr = shipped.transcribe(read_audio(PROMPTS["es"] / "confbridge-mute-extended.wav").samples)
    assert tr.language == "es" and tr.model == "whisper-base", tr
    assert "modo mudo" in tr.text.lower() and "participantes" in tr.text.lower(), tr.text


def test_after_a_spanish_turn_the_next_one_skips_the_english_model(models_dir, recordings,  # noqa: ARG001
                                                                   caplog):
    """The language guess goes first after a turn in another language: a Spanish turn that
    follows a Spanish one is not tried on the English model; an English one still gets it."""
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    t = Transcriber(load_config(None).audio.asr, dirs)
    tried_english = "asking the multilingual model which language this is"
    caplog.set_level("DEBUG", "sarai.audio.asr")
    heard = []
    for lang, name in (("es", "conf-getpin"), ("es", "conf-invalidpin"), ("es", "conf-locked"),
                       ("en", "conf-locked"), ("es", "vm-mismatch")):
        caplog.clear()
        tr = t.transcribe(read_audio(PROMPTS[lang] / f"{name}.wav").samples)
        h, n = word_recall(asterisk_texts(lang)[name], tr.text, lang)
        heard.append((tr.language, tr.model, tried_english in caplog.text, h / n >= 0.5))
    assert heard == [
        ("es", "whisper-base", True, True),  # the first turn: English model first, as always
        ("es", "whisper-base", False, True),
        ("es", "whisper-base", False, True),
        ("en", "whisper-tiny-en", False, True),  # heard as English: the English model decodes
        ("es", "whisper-base", True, True),  # after English, English first again
    ], heard


def test_each_model_encodes_a_short_turn_on_its_own_window(models_dir, recordings,  # noqa: ARG001
                                                         monkeypatch):
    """tiny.en keeps a 10 s window (it loops more often on shorter ones); the multilingual
    model, which hears Spanish, encodes a short turn on a 6 s one (on 40 Spanish tuning
    prompts: 70 ms less at the median, 140 at p90, as many words; README, Fast recognition)."""
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    t = Transcriber(load_config(None).audio.asr, dirs)
    t.preload()
    names = {id(t._model(n)): n for n in dirs}
    windows: list[tuple[str, float]] = []
    encode = asr_module.encode_window

    def spy(model, audio, window_s):
        windows.append((names[id(model)], window_s))
        return encode(model, audio, window_s)

    monkeypatch.setattr(asr_module, "encode_window", spy)
    for lang, name in (("en", "conf-locked"), ("es", "conf-invalidpin"), ("es", "vm-sorry")):
        audio = read_audio(PROMPTS[lang] / f"{name}.wav").samples
        assert len(audio) / 16000 < 4  # short enough for the shortest window
        tr = t.transcribe(audio)
        assert tr.language == lang, (name, tr)
    assert windows == [
        ("whisper-tiny-en", 10),  # English: the English model alone
        ("whisper-tiny-en", 10), ("whisper-base", 6),  # the first Spanish turn tries English
        ("whisper-base", 6),  # after a Spanish turn the language guess goes first
    ], windows


def _decodes(t: Transcriber, monkeypatch) -> list[tuple[str, str]]:
    """(model, language) of every short-window decode `t` makes from now on."""
    names = {id(m): n for n, m in t._models.items()}
    calls: list[tuple[str, str]] = []
    decode = asr_module.decode_window

    def spy(model, encoded, duration_s, language, **kw):
        calls.append((names.get(id(model), "?"), language))
        return decode(model, encoded, duration_s, language, **kw)

    monkeypatch.setattr(asr_module, "decode_window", spy)
    return calls


def _leaning_english(models_dir, name: str) -> tuple[Transcriber, np.ndarray]:
    """A Transcriber that has just heard a Spanish turn, and the Spanish prompt `name`."""
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    t = Transcriber(load_config(None).audio.asr, dirs)
    t.preload()
    t.transcribe(read_audio(PROMPTS["es"] / "conf-getpin.wav").samples)  # a Spanish turn first
    return t, read_audio(PROMPTS["es"] / f"{name}.wav").samples


def test_a_spanish_turn_the_guess_gives_to_english_is_settled_by_its_spanish_words(
        models_dir, recordings, monkeypatch):  # noqa: ARG001
    """"Actualmente solo hay otro participante en la conferencia.": the English model is unsure
    of it (it loops, mean log-prob −1.06) and the language guess gives it to English (0.59 of
    the probability). Its Spanish decode is sure (−0.16) and reads clearly as Spanish: that
    stands, and the multilingual model does not decode it in English as well (40-240 ms
    sooner on the Spanish tuning prompts that take this way; README, Languages)."""
    t, audio = _leaning_english(models_dir, "conf-onlyone")
    decodes = _decodes(t, monkeypatch)
    tr = t.transcribe(audio)
    assert tr.language == "es" and tr.model == "whisper-base", tr
    assert decodes == [("whisper-tiny-en", "en"), ("whisper-base", "es")], decodes
    h, n = word_recall(asterisk_texts("es")["conf-onlyone"], tr.text, "es")
    assert h / n >= 0.8, tr.text


def test_where_the_spanish_decode_is_unsure_both_decodes_and_their_words_decide(
        models_dir, recordings, monkeypatch):  # noqa: ARG001
    """"Marque el asterisco para anular.": the guess gives it to English (0.997), and the
    Spanish decode, right as it is, scores a mean log-prob of −0.63, below
    `other_min_logprob`. So English is decoded too, and the surer transcript (or, where
    Whisper told to write English wrote the Spanish it heard, its words) says which language
    it is."""
    t, audio = _leaning_english(models_dir, "vm-star-cancel")
    decodes = _decodes(t, monkeypatch)
    tr = t.transcribe(audio)
    assert decodes == [("whisper-tiny-en", "en"), ("whisper-base", "es"),
                       ("whisper-base", "en")], decodes
    assert tr.language == "es" and tr.model == "whisper-base", tr
    h, n = word_recall(asterisk_texts("es")["vm-star-cancel"], tr.text, "es")
    assert h / n >= 0.8, tr.text


def test_where_the_spanish_words_do_not_settle_it_both_decodes_decide(
        models_dir, recordings, monkeypatch):  # noqa: ARG001
    """A sure Spanish decode whose words do not read clearly as Spanish (made so here) does
    not stand alone either."""
    t, audio = _leaning_english(models_dir, "conf-onlyone")
    guess = t._written.guess
    unsure = iter([None])  # the first look, at the Spanish decode, cannot tell
    monkeypatch.setattr(t._written, "guess", lambda text: next(unsure, guess(text)))
    decodes = _decodes(t, monkeypatch)
    tr = t.transcribe(audio)
    assert decodes == [("whisper-tiny-en", "en"), ("whisper-base", "es"),
                       ("whisper-base", "en")], decodes
    assert tr.language == "es" and tr.model == "whisper-base", tr


@pytest.mark.parametrize("question", ["Why do cats purr?", "Why do leaves fall?",
                                      "What day is it?"])
def test_english_that_reads_as_spanish_when_decoded_so_is_still_heard_in_english(
        shipped, make_speech, question):
    """Synthetic English (at 175 words a minute) the English model is unsure of and the guess
    gives to English: its Spanish decode reads clearly as Spanish ("¿Por qué no puedo
    creer?", "¿Qué es esto?") but the model is not sure of it (−0.69 to −1.31), so English is
    decoded too, and wins."""
    shipped._last_language = "en"
    tr = shipped.transcribe(read_audio(make_speech([question], speed=175)).samples)
    assert tr.language == "en", tr
    assert word_recall(question, tr.text, "en")[0] >= 2, tr.text


def test_english_the_guess_is_all_but_sure_of_is_not_taken_for_unreadable_spanish(
        shipped, recordings, make_speech):  # noqa: ARG001
    """"Agent logged off." (recorded) and "Can dogs see colours?" (espeak-ng, 175 words a
    minute): the English model is unsure, the language guess gives English ≥ 0.99, and the
    Spanish decode ("Agent LogDuff", "Candoxy colors") is a little surer than the English one
    but reads as no language. That is no evidence of Spanish: the turn is English (before,
    both came out as Spanish, and in one CI run so did a spoken "Why do cats purr?" as
    "¿Y du cat spur?")."""
    for audio, said in [
        (read_audio(PROMPTS["en"] / "agent-loggedoff.wav").samples, "Agent logged off."),
        (read_audio(make_speech(["Can dogs see colours?"], speed=175)).samples, None),
    ]:
        shipped._last_language = "en"
        tr = shipped.transcribe(audio)
        assert tr.language == "en", tr
        if said:
            assert word_recall(said, tr.text, "en")[0] >= 1, tr.text


def test_spanish_the_guess_gives_to_english_still_counts_when_its_words_read_as_spanish(
        shipped, recordings):  # noqa: ARG001
    """The rule above leaves alone a Spanish turn whose words read as Spanish although the
    guess gives English 0.997 ("Marque el asterisco para anular.")."""
    shipped._last_language = "en"
    tr = shipped.transcribe(read_audio(PROMPTS["es"] / "vm-star-cancel.wav").samples)
    assert tr.language == "es", tr
