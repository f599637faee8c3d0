"""Each routing rule on its own, with the real classifier trained from routing/data and real
audio (espeak-ng speech, generated music and noise) for the sound rules."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from sarai.models.settings import Tier
from sarai.routing.errors import RoutingError, UnsupportedAttachment
from sarai.routing.router import Action, Attachment, Router, Rule, TurnSignals
from sarai.routing.settings import RoutingSettings, TierPreferences
from sarai.routing.spoken import over_background, speak

ALL = (Tier.OMNI_QUALITY, Tier.EXPERT, Tier.OMNI_FAST, Tier.TINY)


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(RoutingSettings())


@pytest.mark.parametrize("text", ["", "   ", "[music]", "(applause) ♪♪", "...", "*laughs*"])
def test_empty_or_noise_only_transcripts_are_skipped(router, text):
    d = router.decide(TurnSignals(text))
    assert d.action is Action.SKIP and d.rule is Rule.NOISE
    assert d.candidates == ()
    assert "nothing to answer" in d.reason
    assert ("empty" in d.reason) if not text.strip() else ("noise" in d.reason)


def test_annotations_around_words_are_ignored(router):
    d = router.decide(TurnSignals("[music] hello, how are you?"))
    assert d.action is Action.ANSWER and d.tier is Tier.OMNI_FAST
    assert d.scores["words"] == 4


@pytest.mark.parametrize("text", [
    "Answer quickly: explain how a nuclear reactor works in detail.",
    "Briefly, compare capitalism and socialism.",
    "Responde rápido: explícame la teoría de la relatividad.",
    "En pocas palabras, ¿cómo funciona un motor?",
])
def test_explicit_quick_request_wins_over_complexity(router, text):
    d = router.decide(TurnSignals(text))
    assert d.tier is Tier.OMNI_FAST and d.rule is Rule.EXPLICIT_FAST
    assert "quick answer" in d.reason and d.reason.endswith("→ omni_fast")


@pytest.mark.parametrize("text", [
    "Think carefully: what should I have for lunch?",
    "Take your time, is it a nice day?",
    "Piénsalo bien: ¿qué le regalo a mi hermano?",
    "Tómate tu tiempo, ¿qué película vemos?",
])
def test_explicit_think_request_goes_to_quality(router, text):
    d = router.decide(TurnSignals(text))
    assert d.tier is Tier.OMNI_QUALITY and d.rule is Rule.EXPLICIT_THINK
    assert "think it through" in d.reason


def test_think_phrase_survives_a_recognition_typo(router):
    d = router.decide(TurnSignals("Pienzalo con calma, que hago"))
    assert d.rule is Rule.EXPLICIT_THINK


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (200, 30, 30)).save(path)
    return path


def test_attachment_forces_a_multimodal_tier(router, image):
    d = router.decide(TurnSignals("what is in this picture?",
                                  attachments=(Attachment.from_path(image),)))
    assert d.tier is Tier.OMNI_QUALITY and d.rule is Rule.ATTACHMENT
    assert "image attached (photo.png)" in d.reason
    assert d.candidates == (Tier.OMNI_QUALITY, Tier.OMNI_FAST)  # never a text-only tier


def test_audio_clip_attachment_with_no_words(router):
    clip = Attachment.from_path(REPO / "audio/data/hello.wav")
    d = router.decide(TurnSignals("", attachments=(clip,)))
    assert d.action is Action.ANSWER and d.rule is Rule.ATTACHMENT
    assert "audio attached" in d.reason


def test_quick_request_with_an_attachment_stays_multimodal(router, image):
    d = router.decide(TurnSignals("quick answer, what colour is this?",
                                  attachments=(Attachment.from_path(image),)))
    assert d.tier is Tier.OMNI_FAST and d.rule is Rule.EXPLICIT_FAST
    assert d.candidates == (Tier.OMNI_FAST,)


def test_attachment_when_no_multimodal_tier_can_serve(router, image):
    sig = TurnSignals("describe it", attachments=(Attachment.from_path(image),),
                      available=frozenset({Tier.EXPERT, Tier.TINY}))
    d = router.decide(sig)
    # Nothing multimodal reports it can serve: the multimodal ladder is still what is tried.
    assert d.candidates == (Tier.OMNI_QUALITY, Tier.OMNI_FAST)


def test_unsupported_attachment_is_one_clear_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list")
    with pytest.raises(UnsupportedAttachment, match="cannot attach: notes.txt is not"):
        Attachment.from_path(notes)
    with pytest.raises(RoutingError, match="not found"):
        Attachment.from_path(tmp_path / "missing.png")


def test_attachment_whose_content_contradicts_its_name(tmp_path):
    fake = tmp_path / "song.wav"
    Image.new("RGB", (8, 8)).save(fake, format="PNG")
    with pytest.raises(UnsupportedAttachment, match="song.wav is not an audio file"):
        Attachment.from_path(fake)


@pytest.mark.parametrize("text", ["What is this sound?", "Do you know what song this is?",
                                  "¿Qué es ese ruido?", "¿Qué canción está sonando?"])
def test_asking_about_the_sound_goes_to_quality(router, text):
    d = router.decide(TurnSignals(text))
    assert d.tier is Tier.OMNI_QUALITY and d.rule is Rule.SOUND


@pytest.fixture(scope="module")
def hello_speech() -> np.ndarray:
    return speak("Hello, how are you today?", "en")


@pytest.mark.parametrize("kind", ["music", "noise"])
def test_loud_background_sound_is_audio_heavy(router, hello_speech, kind):
    mixed = over_background(hello_speech, kind, snr_db=6.0, seed=3)
    features = router.audio_features(mixed)
    assert features.background_kind == kind
    d = router.decide(TurnSignals("Hello, how are you today?", audio=features))
    assert d.tier is Tier.OMNI_QUALITY and d.rule is Rule.AUDIO
    assert f"background {kind}" in d.reason and "dBFS" in d.reason
    assert d.scores["snr_db"] < 15


def test_clean_speech_is_not_audio_heavy(router, hello_speech):
    features = router.audio_features(hello_speech)
    d = router.decide(TurnSignals("Hello, how are you today?", audio=features))
    assert d.tier is Tier.OMNI_FAST and d.rule is Rule.SOCIAL
    assert features.background_dbfs < -60 and 0.5 < features.speech_ratio <= 1.0


def test_quiet_background_under_clear_speech_is_not_audio_heavy(router, hello_speech):
    soft = over_background(hello_speech, "noise", snr_db=30.0, seed=1)
    d = router.decide(TurnSignals("Hello, how are you today?", audio=router.audio_features(soft)))
    assert d.rule is not Rule.AUDIO


def test_audio_heavy_threshold_comes_from_the_config(hello_speech):
    mixed = over_background(hello_speech, "music", snr_db=6.0, seed=3)
    strict = Router(RoutingSettings.model_validate({"audio": {"heavy_max_snr_db": 0.0}}))
    d = strict.decide(TurnSignals("Hello, how are you today?",
                                  audio=strict.audio_features(mixed)))
    assert d.rule is not Rule.AUDIO


@pytest.mark.parametrize("text", ["Hi! How are you doing today?", "I feel so lonely tonight.",
                                  "¡Muchas gracias, eres un encanto!", "Estoy muy triste hoy."])
def test_short_empathetic_turns_go_fast_with_a_readable_reason(router, text):
    d = router.decide(TurnSignals(text))
    assert d.tier is Tier.OMNI_FAST and d.rule is Rule.SOCIAL
    assert d.reason.startswith(f"empathy {d.scores['empathy']:.2f}, ")
    assert d.reason.endswith(f"{int(d.scores['words'])} words → omni_fast")
    assert d.scores["empathy"] >= 0.8


@pytest.mark.parametrize("text", [
    "Explain the difference between TCP and UDP.",
    "Write a Python script that merges two CSV files by date.",
    "Compara las ventajas de estudiar medicina o ingeniería.",
    "Explícame paso a paso cómo se hace una paella.",
])
def test_complex_requests_go_to_quality(router, text):
    d = router.decide(TurnSignals(text))
    assert d.tier is Tier.OMNI_QUALITY and d.rule is Rule.NEED
    assert d.reason.startswith(f"complexity {d.scores['complexity']:.2f}")
    assert d.scores["need"] >= 0.5


@pytest.mark.parametrize("text", ["What time is it?", "Turn off the kitchen lights.",
                                  "¿Qué hora es en Londres?", "Pon música, por favor."])
def test_simple_requests_default_to_fast(router, text):
    d = router.decide(TurnSignals(text))
    assert d.tier is Tier.OMNI_FAST and d.rule is Rule.DEFAULT
    assert d.scores["complexity"] < 0.5


def test_a_long_turn_needs_quality_even_when_simple(router):
    text = " ".join(["I went to the shop and then I went home and then I had dinner."] * 5)
    short = router.decide(TurnSignals("I went to the shop and then I went home."))
    long = router.decide(TurnSignals(text))
    assert long.tier is Tier.OMNI_QUALITY and "(long)" in long.reason
    assert long.scores["need"] > short.scores["need"]


def test_long_speech_adds_to_the_need(router):
    text = "Tell me about the weather in the mountains this weekend."
    base = router.decide(TurnSignals(text, audio_s=3.0)).scores["need"]
    slow = router.decide(TurnSignals(text, audio_s=24.0))
    assert slow.scores["need"] == pytest.approx(base + 0.5, abs=0.01)
    assert "24.0 s of speech (long)" in slow.reason


def test_weights_and_tier_preferences_come_from_the_config():
    cfg = RoutingSettings(tiers=TierPreferences(fast=Tier.TINY, quality=Tier.EXPERT))
    r = Router(cfg)
    assert r.decide(TurnSignals("hello there!")).tier is Tier.TINY
    assert r.decide(TurnSignals("Explain how vaccines work.")).tier is Tier.EXPERT
    lenient = Router(RoutingSettings.model_validate({"thresholds": {"quality": 5.0}}))
    assert lenient.decide(TurnSignals("Explain how vaccines work.")).tier is Tier.OMNI_FAST


def test_tiers_that_cannot_serve_are_passed_over(router):
    sig = TurnSignals("Explain how vaccines work.",
                      available=frozenset({Tier.EXPERT, Tier.OMNI_FAST, Tier.TINY}))
    d = router.decide(sig)
    assert d.tier is Tier.EXPERT and d.wanted is Tier.OMNI_QUALITY
    assert d.candidates == (Tier.EXPERT, Tier.OMNI_FAST, Tier.TINY)
    assert d.reason.endswith("→ omni_quality; omni_quality cannot serve now → expert")


def test_availability_source_is_asked_lazily_best_first():
    asked: list[Tier] = []

    def can_serve(tier: Tier) -> bool:
        asked.append(tier)
        return tier is not Tier.OMNI_FAST

    r = Router(RoutingSettings(), availability=can_serve)
    d = r.decide(TurnSignals("thanks, you're lovely"))
    assert d.tier is Tier.TINY and asked == [Tier.OMNI_FAST, Tier.TINY]
    asked.clear()
    d = r.decide(TurnSignals("hi", available=frozenset(ALL)))  # the turn's own set wins
    assert asked == [] and d.tier is Tier.OMNI_FAST


def test_nothing_available_still_returns_the_whole_ladder(router):
    d = router.decide(TurnSignals("Explain how vaccines work.", available=frozenset()))
    assert d.tier is Tier.OMNI_QUALITY and d.candidates == ALL


def test_decision_reports_latency_and_scores(router):
    d = router.decide(TurnSignals("How does a rainbow form?", audio_s=2.5, speech_ratio=0.8))
    assert d.latency_ms > 0
    assert {"words", "empathy", "complexity", "need", "audio_s", "speech_ratio"} <= d.scores.keys()
    assert d.as_dict()["tier"] == d.tier.value


def test_audio_analysis_rejects_what_it_cannot_measure(router):
    from sarai.audio.errors import AudioError

    with pytest.raises(AudioError, match="at least 30 ms"):
        router.audio_features(np.zeros(100, np.int16))
    with pytest.raises(AudioError, match="int16"):
        router.audio_features(np.zeros(16000, np.float32))
    assert router.audio_features(np.zeros(16000, np.int16)).speech_ratio == 0.0


def test_attachment_goes_to_a_tier_that_takes_media_directly(image):
    r = Router(RoutingSettings(), takes_media=lambda t: t is Tier.OMNI_FAST)
    d = r.decide(TurnSignals("what is this?", attachments=(Attachment.from_path(image),)))
    assert d.tier is Tier.OMNI_FAST and d.rule is Rule.ATTACHMENT
    assert d.candidates == (Tier.OMNI_FAST,)
    assert d.reason == "image attached (photo.png) → omni_fast"


def test_attachment_when_no_tier_takes_media_directly(image):
    r = Router(RoutingSettings(), takes_media=lambda t: False)
    d = r.decide(TurnSignals("what is this?", attachments=(Attachment.from_path(image),)))
    assert d.tier is Tier.OMNI_QUALITY and d.candidates == ALL
    assert "no tier here takes attachments directly → omni_quality" in d.reason
