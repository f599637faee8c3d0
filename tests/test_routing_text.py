"""Normalisation, noise-only transcripts and phrase matching shared by the router's rules."""

from __future__ import annotations

import pytest

from sarai.routing.text import PhraseSet, is_noise_only, ngrams, normalise, strip_annotations


def test_normalise_folds_case_accents_and_punctuation_but_keeps_enye():
    assert normalise("¡Piénsalo BIEN, señor!") == "piensalo bien señor"
    assert normalise("I'm   fine...") == "i m fine"
    assert normalise("¿Porque no?") == "por que no"  # recognisers blur "porque" / "por qué"


@pytest.mark.parametrize(("text", "noise"), [
    ("", True), ("  ", True), ("[Music]", True), ("[BLANK_AUDIO]", True), ("(ruido)", True),
    ("♪ ♫", True), ("...", True), ("*coughs* [music]", True),
    ("hi", False), ("[music] what song is this", False), ("¿y?", False), ("42", False),
])
def test_noise_only_transcripts(text, noise):
    assert is_noise_only(text) is noise


def test_strip_annotations_keeps_the_words():
    assert strip_annotations("[music] play it (laughs) again").split() == ["play", "it", "again"]


def test_ngrams_cover_words_pairs_and_characters():
    grams = ngrams("explica esto")
    assert {"w:explica", "w:esto", "w:explica esto", "c: ex", "c:lica "} <= set(grams)


def test_phrases_match_whole_words_only():
    p = PhraseSet(["think hard", "^quick", "this sound"])
    assert p.first(normalise("Please think hard about it")) == "think hard"
    assert p.first(normalise("I think harder now")) is None
    assert p.first(normalise("Quick! where is it")) == "quick"
    assert p.first(normalise("how quick is light")) is None  # '^' = at the start only
    assert p.first(normalise("quicksand is scary")) is None


def test_long_words_tolerate_one_recognition_error_short_ones_do_not():
    p = PhraseSet(["piensalo", "que cancion", "this sound"])
    assert p.first(normalise("Pienzalo bien")) == "piensalo"
    assert p.first(normalise("ares que cantion es esta")) == "que cancion"
    assert p.first(normalise("this round is mine")) is None  # "sound" is too short to bend
    assert p.first(normalise("pinzalos")) is None  # two edits away
