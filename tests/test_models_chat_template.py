"""Every model is prompted in its own chat format, and every starter tier really answers.

Real llama.cpp inference on the starter GGUFs, real Whisper for the media turns. A reply that
holds a chat template's markup, or the system prompt, is a prompt echoed back (what the
Llama-2 fallback did to Gemma) and would be spoken as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gguf
import numpy as np
import pytest

from conftest import speech
from sarai.audio.asr import Transcriber
from sarai.audio.settings import AsrSettings
from sarai.daemon.config import load_config
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.turn import Assistant
from sarai.models import starter
from sarai.models.attachments import MediaLimits, load
from sarai.models.chat_template import GEMMA, MARKERS, template_of
from sarai.models.errors import ModelError
from sarai.models.llamacpp import LlamaCppBackend
from sarai.models.registry import ModelRegistry
from sarai.models.settings import ModelsSettings, Tier
from sarai.routing.availability import from_registry, media_from_registry
from sarai.routing.router import Router
from sarai.routing.settings import RoutingSettings, TierPreferences

SYSTEM = load_config(None).assistant.system_prompt


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def repeats_system_prompt(reply: str, n: int = 6) -> bool:
    """Whether the reply holds any run of `n` words of the system prompt."""
    runs = {tuple(w[i : i + n]) for w in [_words(SYSTEM)] for i in range(len(w) - n + 1)}
    r = _words(reply)
    return any(tuple(r[i : i + n]) in runs for i in range(len(r) - n + 1))


def no_template(path: Path, arch: str = "llama") -> Path:
    """A small, valid GGUF file with no chat template (its header is all that is read)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# --- where the template comes from ---------------------------------------------------------

def test_a_template_in_the_file_is_used(smollm2):
    t = template_of(smollm2)
    assert t.from_file and t.source == "the GGUF file" and "<|im_start|>" in t.template


def test_a_file_without_one_gets_its_architectures(gemma):
    t = template_of(gemma)
    assert not t.from_file and t.template == GEMMA
    assert t.source == "the known gemma template for gemma3"


def test_gemma_folds_the_system_prompt_into_the_first_user_turn(gemma):
    rows = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Why?"}]
    assert template_of(gemma).render(rows, bos_token="<bos>") == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n")


LATE_NOTE = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!"},
             {"role": "system", "content": "Answer only in Spanish."},
             {"role": "user", "content": "Why?"}]


def test_a_note_after_the_memory_stays_a_system_message_where_the_template_takes_it(smollm2):
    prompt = template_of(smollm2).render(LATE_NOTE)
    assert ("<|im_start|>system\nAnswer only in Spanish.<|im_end|>\n"
            "<|im_start|>user\nWhy?<|im_end|>") in prompt


def test_gemma_folds_a_note_after_the_memory_into_the_next_user_turn(gemma):
    """Gemma's template refuses a system message between turns (roles must alternate)."""
    assert template_of(gemma).render(LATE_NOTE, bos_token="<bos>") == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nAnswer only in Spanish.\n\nWhy?<end_of_turn>\n"
        "<start_of_turn>model\n")


def test_no_template_and_an_unknown_architecture_is_refused_before_loading(tmp_path):
    path = no_template(tmp_path / "mystery.gguf")
    with pytest.raises(ModelError, match=r"mystery\.gguf carries no chat template and its "
                                         r"architecture 'llama' has no known one"):
        LlamaCppBackend(path)


def test_the_registry_refuses_that_tier_and_the_next_one_answers(tmp_path, models_dir):
    path = no_template(tmp_path / "mystery.gguf")
    base = load_config(None).models
    models = base.model_copy(update={
        "omni_fast": base.omni_fast.model_copy(update={"model": str(path)}),
        "tiny": base.tiny.model_copy(update={"max_tokens": 12}),
    })
    reg = ModelRegistry(models, models_dir)
    try:
        with pytest.raises(ModelError, match="tier omni_fast: mystery.gguf carries no chat"):
            reg.resolve(Tier.OMNI_FAST)
        assert "tier omni_fast: mystery.gguf carries no chat template" in reg.starter_notice()
        a = Assistant(system_prompt=SYSTEM, registry=reg, router=Router(RoutingSettings()),
                      memory=Conversation(0, 0))
        rec = a.text_turn("answer quickly: hi there", None)
        assert rec.error is None and rec.tier == "tiny" and rec.reply
        assert "omni_fast unavailable: tier omni_fast: mystery.gguf carries no chat" in rec.reason
    finally:
        reg.close()


def test_a_pretrained_starter_is_refused_with_the_reason(models_dir):
    base = load_config(None).models
    models = base.model_copy(update={
        "omni_quality": base.omni_quality.model_copy(update={"starter": "gemma3-270m"})})
    reg = ModelRegistry(models, models_dir)
    try:
        with pytest.raises(ModelError, match=r"tier omni_quality: Qwen2\.5-Omni-7B-Q4_K_M\.gguf "
                                             r"not found .* the starter 'gemma3-270m' .* is a "
                                             r"pretrained model .* \(smollm2-135m\)"):
            reg.resolve(Tier.OMNI_QUALITY)
    finally:
        reg.close()


# --- every starter tier answers, typed and with media ---------------------------------------

def _only(tier: Tier) -> RoutingSettings:
    """Routing that sends every turn to `tier` first."""
    return RoutingSettings(tiers=TierPreferences(fast=tier, quality=tier, multimodal=(tier,)))


@pytest.fixture(scope="module")
def starter_registry(models_dir):
    models: ModelsSettings = load_config(None).models
    models = models.model_copy(update={
        t.value: models.tier(t).model_copy(update={"max_tokens": 48, "temperature": 0.0})
        for t in Tier})
    reg = ModelRegistry(models, models_dir)
    assert all(reg.resolve(t).starter for t in Tier)  # a fresh install: starters only
    yield reg
    reg.close()


@pytest.fixture(scope="module")
def whisper(models_dir) -> Transcriber:
    root = models_dir / "starter"
    return Transcriber(AsrSettings(), {"whisper-tiny-en": root / "whisper-tiny-en"})


@pytest.fixture(scope="module")
def question(tmp_path_factory) -> Path:
    return speech(tmp_path_factory.mktemp("q"), ["What is the weather like today?"],
                  rate=16000)


def _check(rec, tier: Tier) -> None:
    assert rec.error is None, rec.error
    assert rec.tier == tier.value, rec.reason
    assert rec.reply.strip(), rec
    assert not any(m in rec.reply for m in MARKERS), rec.reply
    assert not repeats_system_prompt(rec.reply), rec.reply


@pytest.mark.parametrize("tier", list(Tier))
def test_every_starter_tier_answers_a_typed_and_a_media_turn(starter_registry, whisper,
                                                              question, tier):
    reg = starter_registry
    a = Assistant(system_prompt=SYSTEM, registry=reg,
                  router=Router(_only(tier), availability=from_registry(reg),
                                takes_media=media_from_registry(reg)),
                  memory=Conversation(0, 0), transcriber=whisper)
    typed = a.text_turn("think it through: why is the sky blue?", None)
    _check(typed, tier)
    print(f"{tier} typed: {typed.reply!r}")
    media = a.text_turn("", None, media=load(question, MediaLimits()))
    _check(media, tier)
    # The starter has no projector: the recording went as its transcript, and the turn says so.
    assert "weather" in media.transcript.lower()
    assert "transcribed" in media.reason
    print(f"{tier} media: {media.reply!r}")


def test_ask_on_a_fresh_install_answers_instead_of_echoing_the_prompt(sarai):
    r = sarai("ask", "--no-speak", "--json", "think it through: why is the sky blue?")
    assert r.code == 0, r.err
    rec = json.loads(r.out.strip().splitlines()[-1])
    assert rec["tier"] == "omni_quality" and rec["error"] is None
    assert rec["reply"].strip()
    assert not any(m in rec["reply"] for m in MARKERS), rec["reply"]
    assert not repeats_system_prompt(rec["reply"]), rec["reply"]


def test_the_pretrained_gemma_is_no_tier_of_the_shipped_configuration():
    for t in Tier:
        name = load_config(None).models.tier(t).starter
        assert name is not None and starter.CATALOGUE[name].chat
