"""A missing or unusable model file is an error that names it, and the next tier answers.

Real registry, real llama.cpp on copies of the starter GGUFs. A configured model that is
not there at all may be stood in for by a starter; one that is there but is not a usable
GGUF file (a folder, /dev/zero, a file cut short), or that vanished after it was loaded,
is never silently replaced: the tier fails with one sentence naming the path, and the turn's
fallback ladder goes on to the next tier.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sarai.daemon.config import load_config
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.turn import Assistant
from sarai.models.errors import ModelError
from sarai.models.registry import ModelRegistry
from sarai.models.settings import ModelsSettings, Tier
from sarai.routing.router import Router
from sarai.routing.settings import RoutingSettings

QUICK = "answer quickly: hi there"  # routed to omni_fast; its ladder is omni_fast → tiny


def _models(fast_model: str) -> ModelsSettings:
    base = load_config(None).models
    return base.model_copy(update={
        "omni_fast": base.omni_fast.model_copy(update={"model": fast_model, "max_tokens": 8,
                                                       "residency": "on_demand"}),
        "tiny": base.tiny.model_copy(update={"max_tokens": 8}),
    })


def _assistant(reg: ModelRegistry) -> Assistant:
    return Assistant(system_prompt="You are a helpful assistant.", registry=reg,
                     router=Router(RoutingSettings()), memory=Conversation(0, 0),
                     filler={"en": "One moment."})


def test_a_model_file_gone_after_an_unload_fails_its_tier_and_the_next_one_answers(
        tmp_path, models_dir, smollm2):
    copy = tmp_path / "fast.gguf"
    shutil.copy(smollm2, copy)
    reg = ModelRegistry(_models(str(copy)), models_dir)
    try:
        assert not reg.resolve(Tier.OMNI_FAST).starter
        reg.load(Tier.OMNI_FAST)
        copy.unlink()
        assert reg.unload(Tier.OMNI_FAST)
        with pytest.raises(ModelError) as err:
            reg.backend(Tier.OMNI_FAST)
        assert str(err.value) == f"tier omni_fast: model file not found: {copy}"
        assert not reg.can_load(Tier.OMNI_FAST).ok  # the router passes it over, too
        rec = _assistant(reg).text_turn(QUICK, None)
        assert rec.error is None and rec.reply and rec.tier == "tiny"
        assert f"omni_fast unavailable: tier omni_fast: model file not found: {copy}" in rec.reason
        assert not reg.resolve(Tier.OMNI_FAST).starter  # never swapped for the starter
    finally:
        reg.close()


def _dev_zero(tmp_path: Path, smollm2: Path) -> str:
    return "/dev/zero"


def _folder(tmp_path: Path, smollm2: Path) -> str:
    return str(tmp_path)


def _text(tmp_path: Path, smollm2: Path) -> str:
    path = tmp_path / "not.gguf"
    path.write_text("just text " * 200)
    return str(path)


def _cut(tmp_path: Path, smollm2: Path) -> str:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm2.read_bytes()[: smollm2.stat().st_size // 2])
    return str(cut)


@pytest.mark.parametrize(("make", "why"), [
    (_dev_zero, "model path /dev/zero is not a regular file"),
    (_folder, "is a folder, not a GGUF model file"),
    (_text, "not.gguf is not a GGUF model file"),
    (_cut, "cut.gguf is truncated: its tensors need"),
], ids=["dev-zero", "folder", "not-gguf", "truncated"])
def test_a_model_path_that_is_there_but_unusable_is_an_error_never_the_starter(
        tmp_path, models_dir, smollm2, make, why):
    path = make(tmp_path, smollm2)
    reg = ModelRegistry(_models(path), models_dir)
    try:
        with pytest.raises(ModelError, match=f"^tier omni_fast: .*{why}"):
            reg.resolve(Tier.OMNI_FAST)
        assert path in str(pytest.raises(ModelError, reg.backend, Tier.OMNI_FAST).value)
        notice = reg.starter_notice()
        assert notice is not None and "Tiers that cannot answer" in notice and path in notice
        assert "omni_fast →" not in notice  # no starter stands in for it
        rec = _assistant(reg).text_turn(QUICK, None)
        assert rec.error is None and rec.reply and rec.tier == "tiny"
        assert "omni_fast unavailable" in rec.reason and path in rec.reason
    finally:
        reg.close()


def test_a_model_that_is_not_there_at_all_is_still_stood_in_for_by_the_starter(
        tmp_path, models_dir):
    reg = ModelRegistry(_models(str(tmp_path / "not-downloaded-yet.gguf")), models_dir)
    try:
        r = reg.resolve(Tier.OMNI_FAST)
        assert r.starter and "not-downloaded-yet.gguf not found" in r.why
    finally:
        reg.close()
