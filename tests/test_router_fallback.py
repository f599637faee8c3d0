"""Every step of the fallback ladder, with real starter models behind the tiers.

A turn goes through sarai.daemon.conversation.turn.Assistant with a real ModelRegistry
(llama.cpp on the starter GGUFs); tiers are made unable to serve the way they are in life — the
model file is missing and no starter stands in, or the RAM budget is too small — and the turn
must land on the next tier with a reason that says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sarai.audio.asr import Transcriber
from sarai.audio.settings import AsrSettings
from sarai.audio.vad import Utterance
from sarai.daemon.config import load_config
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.turn import Assistant
from sarai.models.registry import ModelRegistry
from sarai.models.settings import ModelsSettings, ResidencySettings, Tier
from sarai.routing.availability import from_registry, media_from_registry
from sarai.routing.fallback import LADDER, candidates
from sarai.routing.router import Router
from sarai.routing.settings import RoutingSettings
from sarai.routing.spoken import over_background, speak

COMPLEX = "Please explain step by step how a refrigerator keeps food cold."
SOCIAL = "Hi! How are you doing today?"


def _models(**changes: dict) -> ModelsSettings:
    """The shipped tier settings with short replies, and `changes` per tier."""
    base = load_config(None).models
    update = {}
    for tier in Tier:
        ts = base.tier(tier).model_copy(update={"max_tokens": 12, **changes.get(tier.value, {})})
        update[tier.value] = ts
    return base.model_copy(update=update)


MISSING = {"backend": "llamacpp", "model": "not-installed.gguf", "starter": None}


def _assistant(models_dir: Path, models: ModelsSettings, *, plan: bool = False,
               budget_gb: float | None = None, transcriber: Transcriber | None = None,
               ) -> Assistant:
    residency = ResidencySettings(budget_gb=budget_gb) if budget_gb else None
    registry = ModelRegistry(models, models_dir, residency=residency)
    router = Router(RoutingSettings(),
                    availability=from_registry(registry) if plan else None)
    return Assistant(system_prompt="You are a helpful assistant. Answer briefly.",
                     registry=registry, router=router, memory=Conversation(0, 0),
                     transcriber=transcriber)


@pytest.fixture
def make(models_dir):
    made: list[Assistant] = []

    def _make(models: ModelsSettings, **kw) -> Assistant:
        a = _assistant(models_dir, models, **kw)
        made.append(a)
        return a

    yield _make
    for a in made:
        a.registry.close()


def test_the_ladder_is_the_designed_one():
    assert candidates(Tier.OMNI_QUALITY) == (Tier.OMNI_QUALITY, Tier.EXPERT, Tier.OMNI_FAST,
                                             Tier.TINY)
    assert candidates(Tier.OMNI_FAST) == (Tier.OMNI_FAST, Tier.TINY)
    assert candidates(Tier.TINY) == (Tier.TINY,)
    assert set(LADDER) == set(Tier)


def test_all_tiers_serving_the_complex_turn_stays_on_quality(make):
    rec = make(_models()).text_turn(COMPLEX, None)
    assert rec.error is None and rec.reply
    assert rec.tier == "omni_quality" and "fell back" not in rec.reason


def test_quality_model_missing_the_turn_lands_on_expert(make):
    rec = make(_models(omni_quality=MISSING)).text_turn(COMPLEX, None)
    assert rec.error is None and rec.reply
    assert rec.tier == "expert"
    assert "→ omni_quality" in rec.reason
    assert "fell back to expert" in rec.reason and "omni_quality unavailable" in rec.reason


def test_router_plans_around_a_tier_the_registry_cannot_load(make):
    a = make(_models(omni_quality=MISSING), plan=True)
    rec = a.text_turn(COMPLEX, None)
    assert rec.error is None and rec.reply and rec.tier == "expert"
    assert "omni_quality cannot serve now → expert" in rec.reason
    assert "fell back" not in rec.reason  # it never had to try the missing model


def test_quality_and_expert_missing_the_turn_lands_on_fast(make):
    rec = make(_models(omni_quality=MISSING, expert=MISSING)).text_turn(COMPLEX, None)
    assert rec.error is None and rec.reply and rec.tier == "omni_fast"
    assert "fell back to omni_fast" in rec.reason


def test_fast_missing_a_social_turn_lands_on_tiny(make):
    rec = make(_models(omni_fast=MISSING)).text_turn(SOCIAL, None)
    assert rec.error is None and rec.reply
    assert rec.tier == "tiny" and "empathy" in rec.reason and "fell back to tiny" in rec.reason


def test_budget_too_small_for_quality_lands_on_the_next_tier(make):
    # The starter SmolLM2-135M with omni_quality's 8k context needs ~0.35 GB; with expert's
    # 512 tokens it needs ~0.15 GB. A 0.3 GB budget admits the second and refuses the first.
    a = make(_models(), budget_gb=0.3)
    rec = a.text_turn(COMPLEX, None)
    assert rec.error is None and rec.reply and rec.tier == "expert"
    assert "fell back to expert" in rec.reason


def test_budget_refusal_seen_by_the_router_before_the_turn(make):
    a = make(_models(), budget_gb=0.3, plan=True)
    rec = a.text_turn(COMPLEX, None)
    assert rec.error is None and rec.reply and rec.tier == "expert"
    assert "omni_quality cannot serve now → expert" in rec.reason


def test_no_tier_can_serve_is_a_clear_error_not_a_crash(make):
    everything = {t.value: MISSING for t in Tier}
    rec = make(_models(**everything)).text_turn(COMPLEX, None)
    assert rec.reply == ""
    assert rec.error is not None
    for tier in ("omni_quality", "expert", "omni_fast", "tiny"):
        assert f"{tier} unavailable" in rec.error
    assert "no starter model is configured" in rec.error


@pytest.mark.parametrize("text", ["[music]", "...", "(applause) ♪"])
def test_noise_only_transcript_is_not_answered(make, text):
    a = make(_models())
    rec = a.text_turn(text, None)
    assert rec.tier == "" and rec.reply == "" and rec.error is None
    assert "only noise" in rec.reason and "nothing to answer" in rec.reason
    assert not any(a.registry.is_loaded(t) for t in Tier)  # no model was woken for it


def test_spoken_turn_over_loud_music_goes_to_quality(make, models_dir):
    root = models_dir / "starter"
    asr = Transcriber(AsrSettings(), {"whisper-tiny-en": root / "whisper-tiny-en",
                                      "whisper-base": root / "whisper-base"})
    a = make(_models(), transcriber=asr)
    samples = over_background(speak("Hello, how are you today?", "en"), "music", 6.0, seed=5)
    utt = Utterance(samples=samples, start_s=0.0, end_s=len(samples) / 16000, speech_ratio=0.9)
    rec = a.voice_turn(utt, None, remember=False)
    assert rec.error is None and rec.reply
    assert rec.tier == "omni_quality" and "background music" in rec.reason


def test_registry_says_which_tiers_take_media(models_dir, smollm2, gemma):
    plain = ModelRegistry(_models(), models_dir)
    with_projector = ModelRegistry(
        _models(omni_fast={"model": str(smollm2), "mmproj": str(gemma)}), models_dir)
    try:
        assert not any(media_from_registry(plain)(t) for t in Tier)  # starters: no projector
        takes = media_from_registry(with_projector)
        assert [t for t in Tier if takes(t)] == [Tier.OMNI_FAST]
    finally:
        plain.close()
        with_projector.close()
