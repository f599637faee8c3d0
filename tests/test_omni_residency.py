"""The projector as a resident of the RAM budget, on the tiny Qwen2.5-Omni GGUF + mmproj.

A tier with an `mmproj` is served by the registry's own Omni backend: its text model is loaded
once for text and media turns alike, and the projector is a resident of its own (kind
`mmproj`): loaded by the first multimodal prompt, charged with the RSS it added, freed after
`mmproj_keep_s` (0: right after the prompt is encoded), refused with the reason when the
budget cannot hold it — and then the turn's audio goes as a transcript, saying why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omni_fixtures import tiny, write_speech  # noqa: F401
from PIL import Image

from conftest import wait_until
from sarai.audio.asr import Transcriber
from sarai.audio.settings import AsrSettings
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.turn import Assistant
from sarai.models import memory, starter
from sarai.models.attachments import MediaLimits, load
from sarai.models.backend import Message
from sarai.models.errors import ModelUnavailable
from sarai.models.multimodal import DEFAULT_IMAGE_QUESTION, MediaMessage, prepare_user_turn
from sarai.models.registry import ModelRegistry
from sarai.models.resident import EventKind, ResidencyEvent, ResidentKind
from sarai.models.settings import ModelsSettings, ResidencySettings, Tier, TierSettings
from sarai.routing.availability import from_registry, media_from_registry
from sarai.routing.router import Router
from sarai.routing.settings import RoutingSettings

SYSTEM = Message("system", "You are a helpful assistant.")
LIMITS = MediaLimits()


def _tiers(tiny, smollm2: Path, keep_s: float) -> ModelsSettings:  # noqa: F811
    omni = TierSettings(model=str(tiny.gguf), mmproj=str(tiny.mmproj), mmproj_keep_s=keep_s,
                        starter=None, n_ctx=2048, threads=2, max_tokens=4, use_mmap=False)
    plain = TierSettings(model=str(smollm2), starter=None, n_ctx=256, threads=2, max_tokens=4)
    return ModelsSettings(omni_fast=omni, omni_quality=plain, expert=plain, tiny=plain)


def _registry(tmp: Path, models: ModelsSettings, budget_mb: float = 4096) -> ModelRegistry:
    return ModelRegistry(models, tmp, residency=ResidencySettings(budget_gb=budget_mb / 1024))


def _assistant(reg: ModelRegistry, transcriber: Transcriber | None = None) -> Assistant:
    router = Router(RoutingSettings(), availability=from_registry(reg),
                    takes_media=media_from_registry(reg))
    return Assistant(system_prompt="You are a helpful assistant.", registry=reg, router=router,
                     memory=Conversation(0, 0), transcriber=transcriber)


def _events(reg: ModelRegistry) -> list[ResidencyEvent]:
    seen: list[ResidencyEvent] = []
    reg.subscribe(seen.append)
    return seen


def _loads(seen: list[ResidencyEvent], key: str) -> int:
    return sum(1 for e in seen if e.kind is EventKind.LOADED and e.key == key)


def _projectors(reg: ModelRegistry):
    return [i for i in reg.resident(include_ollama=False) if i.kind is ResidentKind.MMPROJ]


def _whisper(models_dir: Path) -> Transcriber:
    return Transcriber(AsrSettings(language="en"), {"whisper-tiny-en":
                                       starter.CATALOGUE["whisper-tiny-en"].path(models_dir)})


def test_media_turn_loads_the_text_model_once_and_the_projector_as_its_own_resident(
        tmp_path, tiny, smollm2):  # noqa: F811
    reg = _registry(tmp_path, _tiers(tiny, smollm2, keep_s=2.0))
    seen = _events(reg)
    a = _assistant(reg)
    text_key, proj_key = reg.key(Tier.OMNI_FAST), reg.projector_key(Tier.OMNI_FAST)
    size_mb = tiny.mmproj.stat().st_size / memory.MIB
    try:
        handle = reg.backend(Tier.OMNI_FAST)
        assert "".join(handle.stream([SYSTEM, Message("user", "hi")], max_tokens=3))
        assert not _projectors(reg)  # a text turn does not load the projector
        media = load(write_speech(tmp_path / "q.wav", 2.0), LIMITS)
        memory.release_freed()
        before = memory.sample().total_mb
        rec = a.text_turn("what is this?", None, media=media)
        loaded = memory.sample().total_mb
        assert rec.error is None and rec.tier == "omni_fast", rec
        assert "transcribed" not in rec.reason
        assert reg.residency.get(text_key).last_prompt.audio > 0  # the sound reached it
        # One text model for the tier, whether its turns carry media or not.
        assert _loads(seen, text_key) == 1
        assert _loads(seen, proj_key) == 1
        (proj,) = _projectors(reg)
        assert proj.key == proj_key and proj.name == tiny.mmproj.name
        assert proj.tiers == (Tier.OMNI_FAST,) and proj.policy == "ttl"
        assert proj.charged_mb >= 0.9 * size_mb and proj.anon_mb > 0.6 * size_mb
        text = reg.residency.info(text_key)
        assert reg.residency.used_mb() == pytest.approx(text.charged_mb + proj.charged_mb,
                                                        abs=1)
        assert loaded - before > 0.6 * size_mb
        # A second media turn within keep_s reuses it.
        a.text_turn("and this?", None, media=load(write_speech(tmp_path / "r.wav", 1.0), LIMITS))
        assert _loads(seen, proj_key) == 1 and _loads(seen, text_key) == 1
        # After keep_s idle seconds it is freed, and its memory is given back.
        assert wait_until(lambda: not _projectors(reg), timeout=15)
        after = memory.sample().total_mb
        print(f"RSS before {before:.0f} MB, with projector {loaded:.0f} MB, after {after:.0f} MB"
              f" (file {size_mb:.0f} MB)")
        assert loaded - after > 0.6 * size_mb
        gone = [e for e in seen if e.kind is EventKind.UNLOADED and e.key == proj_key]
        assert gone and "ttl" in gone[-1].reason
        assert reg.is_loaded(Tier.OMNI_FAST)  # the text model stays
        assert reg.residency.used_mb() == pytest.approx(reg.residency.info(text_key).charged_mb,
                                                        abs=1)
    finally:
        reg.close()


def test_keep_s_zero_frees_the_projector_right_after_the_prompt(tmp_path, tiny, smollm2):  # noqa: F811
    reg = _registry(tmp_path, _tiers(tiny, smollm2, keep_s=0.0))
    seen = _events(reg)
    proj_key = reg.projector_key(Tier.OMNI_FAST)
    try:
        handle = reg.backend(Tier.OMNI_FAST)
        media = load(write_speech(tmp_path / "q.wav", 1.0), LIMITS)
        reply = handle.stream([SYSTEM, MediaMessage("user", "what is it?", tuple(media))],
                              max_tokens=3)
        next(reply, None)  # the prompt is encoded once the first token is out
        assert not _projectors(reg)
        "".join(reply)
        loaded = next(e for e in seen if e.kind is EventKind.LOADED and e.key == proj_key)
        assert loaded.info is not None and loaded.info.charged_mb > 0
        unloaded = [e for e in seen if e.kind is EventKind.UNLOADED and e.key == proj_key]
        assert unloaded and "mmproj_keep_s 0" in unloaded[-1].reason
        assert reg.is_loaded(Tier.OMNI_FAST)
    finally:
        reg.close()


def test_unloading_the_text_model_frees_its_projector_first(tmp_path, tiny, smollm2):  # noqa: F811
    reg = _registry(tmp_path, _tiers(tiny, smollm2, keep_s=300.0))
    seen = _events(reg)
    try:
        handle = reg.backend(Tier.OMNI_FAST)
        media = load(write_speech(tmp_path / "q.wav", 1.0), LIMITS)
        "".join(handle.stream([SYSTEM, MediaMessage("user", "", tuple(media))], max_tokens=2))
        assert _projectors(reg)
        assert reg.unload(Tier.OMNI_FAST)
        assert not reg.resident(include_ollama=False)
        order = [e.key for e in seen if e.kind is EventKind.UNLOADED]
        assert order == [reg.projector_key(Tier.OMNI_FAST), reg.key(Tier.OMNI_FAST)]
    finally:
        reg.close()


def test_budget_too_small_for_the_projector_refuses_it_and_the_audio_goes_as_transcript(
        tmp_path, tiny, smollm2, models_dir, make_speech):  # noqa: F811
    probe = _registry(tmp_path, _tiers(tiny, smollm2, keep_s=0.0))
    try:
        text_mb = probe.load(Tier.OMNI_FAST).charged_mb
    finally:
        probe.close()
    size_mb = tiny.mmproj.stat().st_size / memory.MIB
    # Room for the text model, not for the projector beside it.
    reg = _registry(tmp_path, _tiers(tiny, smollm2, keep_s=0.0), text_mb + size_mb / 2)
    seen = _events(reg)
    try:
        handle = reg.backend(Tier.OMNI_FAST)
        clip = load(make_speech(["what is the weather in Barcelona"], rate=16000), LIMITS)
        with pytest.raises(ModelUnavailable, match=rf"cannot load {tiny.mmproj.name} "
                           r"\(omni_fast\): needs about .* RAM budget"):
            "".join(handle.stream([SYSTEM, MediaMessage("user", "", tuple(clip))],
                                  max_tokens=2))
        assert any(e.kind is EventKind.REFUSED for e in seen)
        support = reg.media(Tier.OMNI_FAST)
        assert not support.kinds and "could not load its projector" in support.why_not
        # A turn still gets its answer: the transcript goes instead, and the reason says why.
        rec = _assistant(reg, _whisper(models_dir)).text_turn("", None, media=clip)
        assert rec.error is None and rec.tier == "omni_fast", rec
        assert "weather" in rec.transcript.lower()
        assert "could not load its projector" in rec.reason and "transcribed" in rec.reason
        assert not _projectors(reg) and reg.is_loaded(Tier.OMNI_FAST)
    finally:
        reg.close()


def test_a_picture_without_a_question_is_asked_about(tmp_path, tiny, smollm2):  # noqa: F811
    reg = _registry(tmp_path, _tiers(tiny, smollm2, keep_s=0.0))
    img = tmp_path / "p.png"
    Image.new("RGB", (112, 112), (200, 30, 30)).save(img)
    try:
        media = load(img, LIMITS)
        turn = prepare_user_turn("", media, accepts=reg.media(Tier.OMNI_FAST).kinds,
                                 tier="omni_fast")
        assert isinstance(turn.message, MediaMessage)
        assert turn.message.content == DEFAULT_IMAGE_QUESTION
        rec = _assistant(reg).text_turn("", None, media=media)
        assert rec.error is None and rec.tier == "omni_fast", rec
        assert "left out" not in rec.reason
        prompt = reg.residency.get(reg.key(Tier.OMNI_FAST)).last_prompt
        assert prompt.image > 0 and prompt.text > 0
    finally:
        reg.close()


def test_a_picture_without_a_question_for_a_tier_that_cannot_see_is_a_clear_error(
        tmp_path, smollm2):
    plain = TierSettings(model=str(smollm2), starter=None, n_ctx=256, threads=2, max_tokens=4)
    reg = _registry(tmp_path, ModelsSettings(omni_fast=plain, omni_quality=plain, expert=plain,
                                             tiny=plain))
    img = tmp_path / "p.png"
    Image.new("RGB", (64, 64)).save(img)
    try:
        rec = _assistant(reg).text_turn("", None, media=load(img, LIMITS))
        assert rec.error and "cannot see images" in rec.error
        assert "no question was asked" in rec.error and not rec.reply
    finally:
        reg.close()


def test_media_support_says_why_a_tier_takes_no_media(tmp_path, tiny, smollm2):  # noqa: F811
    plain = TierSettings(model=str(smollm2), starter=None, n_ctx=256, threads=2)
    models = ModelsSettings(
        omni_fast=TierSettings(model=str(tiny.gguf), mmproj=str(tmp_path / "gone.gguf"),
                               starter=None),
        omni_quality=TierSettings(model="not-installed.gguf", mmproj=str(tiny.mmproj),
                                  starter="smollm2-135m"),
        expert=plain, tiny=plain)
    reg = _registry(tmp_path, models)
    try:
        fast, quality, tiny_tier = (reg.media(t) for t in (Tier.OMNI_FAST, Tier.OMNI_QUALITY,
                                                           Tier.TINY))
        assert not fast.kinds and "gone.gguf was not found" in fast.why_not
        assert not quality.kinds and "starter model" in quality.why_not
        assert not tiny_tier.kinds and tiny_tier.why_not == "has no projector configured"
    finally:
        reg.close()
