"""Predictive warm-up: what the voice loop asks while the user is still speaking."""

from __future__ import annotations

import pytest

from sarai.models.settings import Tier
from sarai.routing.router import Router
from sarai.routing.settings import RoutingSettings
from sarai.routing.spoken import over_background, speak


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(RoutingSettings())


@pytest.mark.parametrize(("partial", "speech_s", "warm", "why"), [
    ("hi", 0.8, False, "only 1 words"),
    ("hey how are you doing", 1.5, False, "complexity"),
    ("can you explain to me how the", 2.0, True, "complexity"),
    ("explícame paso a paso cómo", 2.0, True, "complexity"),
    ("so yesterday I was at the", 7.0, True, "7.0 s of speech"),
    ("piénsalo bien", 1.0, True, "think it through"),
    ("what is this sound", 1.0, True, "about the sound"),
    ("answer quickly, explain how a", 8.0, False, "quick answer"),
])
def test_warm_up_advice(router, partial, speech_s, warm, why):
    advice = router.warmup(partial, speech_s)
    assert advice.warm is warm and advice.tier is Tier.OMNI_QUALITY
    assert why in advice.reason


def test_loud_background_warms_the_quality_tier(router):
    noisy = over_background(speak("Hello there", "en"), "music", 5.0, seed=2)
    advice = router.warmup("hello", 1.0, router.audio_features(noisy))
    assert advice.warm and "background music" in advice.reason


def test_warm_up_follows_the_config():
    off = Router(RoutingSettings.model_validate({"warmup": {"enabled": False}}))
    assert not off.warmup("piénsalo bien, explícame la relatividad", 20.0).warm
    eager = Router(RoutingSettings.model_validate({"warmup": {"after_speech_s": 1.0},
                                                   "tiers": {"quality": "expert"}}))
    advice = eager.warmup("so", 1.2)
    assert advice.warm and advice.tier is Tier.EXPERT
