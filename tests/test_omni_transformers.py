"""The transformers backend runs the same tiny Qwen2.5-Omni checkpoint (thinker only) on CPU."""

from __future__ import annotations

import json
import struct

import pytest
from omni_fixtures import tiny, write_speech  # noqa: F401
from PIL import Image

from sarai.daemon.config import ConfigError, load_config
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.turn import Assistant
from sarai.models.attachments import MediaKind, MediaLimits, load
from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError, ModelUnavailable
from sarai.models.multimodal import MediaMessage
from sarai.models.registry import ModelRegistry
from sarai.models.resident import ResidentKind
from sarai.models.settings import (
    BackendKind,
    ModelsSettings,
    ResidencySettings,
    Tier,
    TierSettings,
)
from sarai.models.transformers_backend import TransformersOmniBackend
from sarai.routing.availability import from_registry, media_from_registry
from sarai.routing.router import Router
from sarai.routing.settings import RoutingSettings

SYSTEM = Message("system", "You are a helpful assistant.")
LIMITS = MediaLimits()


@pytest.fixture(scope="module")
def hf(tiny):  # noqa: F811
    b = TransformersOmniBackend(tiny.hf_dir, device="cpu", dtype="float32", threads=2)
    yield b
    b.close()


def _ask(media, text="What is this?"):
    return [SYSTEM, MediaMessage("user", text, tuple(media))]


def test_text_turn_streams(hf):
    chunks = list(hf.stream([SYSTEM, Message("user", "hello")], max_tokens=5, temperature=0))
    assert all(isinstance(c, str) for c in chunks)
    assert hf.last_prompt_tokens > 5


def test_audio_reaches_the_thinker_and_grows_with_length(hf, tmp_path):
    plain = hf.inputs([SYSTEM, Message("user", "What is this?")])["input_ids"].shape[-1]
    short = hf.inputs(_ask(load(write_speech(tmp_path / "s.wav", 2.0), LIMITS)))
    long = hf.inputs(_ask(load(write_speech(tmp_path / "l.wav", 6.0), LIMITS)))
    n_short, n_long = short["input_ids"].shape[-1], long["input_ids"].shape[-1]
    # Qwen2.5-Omni's audio encoder gives 25 tokens per second, without padding.
    assert n_short - plain == pytest.approx(2 * 25 + 2, abs=3)
    assert n_long - n_short == pytest.approx(4 * 25, abs=2)
    assert "input_features" in long and "feature_attention_mask" in long
    "".join(hf.stream(_ask(load(tmp_path / "s.wav", LIMITS)), max_tokens=4, temperature=0.7))
    assert hf.last_prompt_tokens == n_short


def test_image_adds_image_tokens(hf, tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (224, 112), (0, 90, 200)).save(path)
    plain = hf.inputs([SYSTEM, Message("user", "What is this?")])["input_ids"].shape[-1]
    inp = hf.inputs(_ask(load(path, LIMITS)))
    # 224×112 in 14-px patches merged 2×2: 8 × 4 = 32 image tokens, plus the two markers.
    assert inp["input_ids"].shape[-1] - plain == 32 + 2
    assert tuple(inp["image_grid_thw"][0].tolist()) == (1, 8, 16)
    "".join(hf.stream(_ask(load(path, LIMITS)), max_tokens=3, temperature=0))


def test_cancel_stops_generation(hf):
    cancel = CancelToken()
    cancel.cancel()
    out = list(hf.stream([SYSTEM, Message("user", "count to a hundred")], max_tokens=64,
                         temperature=0, cancel=cancel))
    assert len("".join(out)) < 40


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a transformers checkpoint"):
        TransformersOmniBackend(tmp_path)


def test_unknown_dtype_is_a_clear_error(tiny):  # noqa: F811
    with pytest.raises(ModelError, match="unknown dtype 'float99'"):
        TransformersOmniBackend(tiny.hf_dir, dtype="float99")


# --- as a tier: `backend: transformers`, a resident of the RAM budget -----------------------

def _tiers(tiny, smollm2, **omni) -> ModelsSettings:  # noqa: F811
    fast = TierSettings(backend="transformers", model=str(tiny.hf_dir), dtype="float32",
                        threads=2, starter=None, n_ctx=4096, max_tokens=4, **omni)
    plain = TierSettings(model=str(smollm2), starter=None, n_ctx=256, threads=2, max_tokens=4)
    return ModelsSettings(omni_fast=fast, omni_quality=plain, expert=plain, tiny=plain)


def _thinker_bytes(folder) -> int:
    total = 0
    for f in folder.glob("*.safetensors"):
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        total += sum(t["data_offsets"][1] - t["data_offsets"][0] for k, t in header.items()
                     if k.startswith("thinker."))
    return total


def test_a_config_can_select_it(tmp_path, tiny):  # noqa: F811
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"models:\n  omni_fast:\n    backend: transformers\n"
                   f"    model: {tiny.hf_dir}\n    dtype: bfloat16\n")
    ts = load_config(cfg).models.omni_fast
    assert ts.backend is BackendKind.TRANSFORMERS and ts.dtype == "bfloat16"
    cfg.write_text("models:\n  omni_fast:\n    backend: transformer\n    model: x\n")
    with pytest.raises(ConfigError, match="'llamacpp', 'ollama', 'openai' or 'transformers'"):
        load_config(cfg)


def test_a_transformers_tier_loads_in_the_budget_and_hears_the_audio(tmp_path, tiny, smollm2):  # noqa: F811
    reg = ModelRegistry(_tiers(tiny, smollm2), tmp_path,
                        residency=ResidencySettings(budget_gb=4))
    key = reg.key(Tier.OMNI_FAST)
    try:
        r = reg.resolve(Tier.OMNI_FAST)
        assert r.backend is BackendKind.TRANSFORMERS and not r.starter and r.path == tiny.hf_dir
        assert reg.key(Tier.OMNI_FAST, long_context=True) == key  # one model for both sizes
        cost = reg.estimate(Tier.OMNI_FAST)
        assert cost.weights_mb == pytest.approx(_thinker_bytes(tiny.hf_dir) / 2**20, rel=0.001)
        # 2 layers × 2 KV heads × 32 dims × (K + V) × 4 bytes × 4096 tokens
        assert cost.extra_mb == pytest.approx(2 * 2 * 32 * 2 * 4 * 4096 / 2**20)
        assert media_from_registry(reg)(Tier.OMNI_FAST)
        assert reg.media(Tier.OMNI_FAST).kinds == {MediaKind.AUDIO, MediaKind.IMAGE}
        info = reg.load(Tier.OMNI_FAST)
        assert info.kind is ResidentKind.LLM and not info.external and info.anon_mb > 0
        # Charged what it was expected to take, or what its load really added if more.
        measured = info.anon_mb + info.file_mb
        print(f"estimate {cost.total_mb:.1f} MB, measured {measured:.1f} MB")
        assert info.charged_mb == pytest.approx(max(cost.total_mb, measured), abs=0.1)
        assert "transformers" in info.detail
        router = Router(RoutingSettings(), availability=from_registry(reg),
                        takes_media=media_from_registry(reg))
        a = Assistant(system_prompt="You are a helpful assistant.", registry=reg,
                      router=router, memory=Conversation(0, 0))
        plain = reg.residency.get(key).inputs([SYSTEM, Message("user", "what is this?")])
        rec = a.text_turn("what is this?", None, media=load(write_speech(tmp_path / "q.wav", 2.0),
                                                              LIMITS))
        assert rec.error is None and rec.tier == "omni_fast", rec
        assert "transcribed" not in rec.reason
        # The recording reached the thinker: 2 s at 25 tokens/s, and its two markers.
        heard = reg.residency.get(key).last_prompt_tokens - plain["input_ids"].shape[-1]
        assert heard == pytest.approx(2 * 25 + 2, abs=3)
        assert reg.unload(Tier.OMNI_FAST)
        assert reg.residency.info(key) is None and reg.residency.used_mb() == 0
    finally:
        reg.close()


def test_a_budget_too_small_refuses_it_with_the_reason(tmp_path, tiny, smollm2):  # noqa: F811
    reg = ModelRegistry(_tiers(tiny, smollm2), tmp_path,
                        residency=ResidencySettings(budget_gb=0.1))
    try:
        with pytest.raises(ModelUnavailable, match="more than the whole RAM budget of 0.1 GB"):
            reg.load(Tier.OMNI_FAST)
    finally:
        reg.close()


def test_a_missing_checkpoint_falls_back_to_the_starter_and_a_non_checkpoint_is_an_error(
        tmp_path, tiny, smollm2):  # noqa: F811
    models = _tiers(tiny, smollm2)
    gone = models.model_copy(update={"omni_fast": models.omni_fast.model_copy(
        update={"model": str(tmp_path / "absent"), "starter": "smollm2-135m"})})
    reg = ModelRegistry(gone, tmp_path)
    try:
        r = reg.resolve(Tier.OMNI_FAST)
        assert r.starter and r.backend is BackendKind.LLAMACPP and "absent not found" in r.why
    finally:
        reg.close()
    (tmp_path / "empty").mkdir()
    broken = models.model_copy(update={"omni_fast": models.omni_fast.model_copy(
        update={"model": str(tmp_path / "empty"), "starter": "smollm2-135m"})})
    reg = ModelRegistry(broken, tmp_path)
    try:
        with pytest.raises(ModelError, match=r"tier omni_fast: .*empty is not a transformers "
                                             r"checkpoint folder \(no config.json\)"):
            reg.resolve(Tier.OMNI_FAST)
    finally:
        reg.close()
