"""The RAM budget on real models: starter GGUFs loaded with llama-cpp-python, real RSS."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import wait_until
from sarai.models import memory
from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError, ModelUnavailable
from sarai.models.registry import ModelRegistry
from sarai.models.resident import EventKind, ResidencyEvent, ResidentKind, ResidentState
from sarai.models.settings import ModelsSettings, ResidencySettings, Tier, TierSettings

HELLO = [Message("system", "You are a helpful assistant."), Message("user", "Say hello.")]


def tier(path: Path, **kw) -> TierSettings:
    return TierSettings(**{"model": str(path), "starter": None, "n_ctx": 256, "threads": 2,
                           "n_batch": 64, **kw})


def registry(tmp: Path, budget_mb: float, **tiers: TierSettings) -> ModelRegistry:
    return ModelRegistry(ModelsSettings(**tiers), tmp,
                         residency=ResidencySettings(budget_gb=budget_mb / 1024))


def events(reg: ModelRegistry) -> list[ResidencyEvent]:
    got: list[ResidencyEvent] = []
    reg.subscribe(got.append)
    return got


def test_pinned_tier_is_preloaded_and_never_evicted_or_unloaded(tmp_path, smollm2, gemma):
    reg = registry(
        tmp_path, 4096,
        omni_fast=tier(smollm2, residency="pinned", ttl_s=0.2),  # ttl is ignored when pinned
        omni_quality=tier(gemma, residency="on_demand"),
        expert=tier(gemma, n_ctx=320, residency="on_demand"),
        tiny=tier(smollm2, n_ctx=384, residency="on_demand"),
    )
    try:
        reg.preload_pinned()
        assert reg.is_loaded(Tier.OMNI_FAST)
        assert not reg.is_loaded(Tier.OMNI_QUALITY)
        time.sleep(0.6)  # three times its ttl_s
        assert reg.is_loaded(Tier.OMNI_FAST)
        with pytest.raises(ModelError, match="is pinned"):
            reg.unload(Tier.OMNI_FAST)
        info = next(i for i in reg.resident() if Tier.OMNI_FAST in i.tiers)
        assert info.pinned and info.policy == "pinned" and info.expires_in_s is None
        # under pressure the pinned model stays: with room for either model but not both,
        # the next tier is refused instead of evicting it
        fast = info.charged_mb
        quality = reg.estimate(Tier.OMNI_QUALITY).total_mb
        tight = registry(tmp_path, fast + quality - 30,
                         omni_fast=tier(smollm2, residency="pinned"),
                         omni_quality=tier(gemma), expert=tier(gemma), tiny=tier(smollm2))
        try:
            tight.preload_pinned()
            with pytest.raises(ModelUnavailable, match="cannot be unloaded now"):
                tight.backend(Tier.OMNI_QUALITY)
            assert tight.is_loaded(Tier.OMNI_FAST)
            # tiny runs on the same file and context (never asked for yet): the refusal
            # names both tiers, so whoever asked to unload tiny learns why it stays
            with pytest.raises(ModelError, match=r"\(omni_fast, tiny\) is pinned"):
                tight.unload(Tier.TINY)
        finally:
            tight.close()
    finally:
        reg.close()


def test_ttl_expiry_unloads_and_frees_rss(tmp_path, gemma, smollm2):
    # use_mmap=False puts the weights in anonymous memory, where freeing them shows.
    reg = registry(tmp_path, 4096,
                   omni_fast=tier(smollm2), tiny=tier(smollm2), expert=tier(gemma),
                   omni_quality=tier(gemma, use_mmap=False, residency="ttl", ttl_s=1.0))
    seen = events(reg)
    try:
        memory.release_freed()
        before = memory.sample()
        handle = reg.backend(Tier.OMNI_QUALITY)
        loaded = memory.sample()
        info = reg.residency.info(reg.key(Tier.OMNI_QUALITY))
        assert info is not None and info.anon_mb is not None and info.anon_mb > 150
        assert loaded.anon_mb - before.anon_mb > 150
        # a reply in progress keeps it resident past its ttl
        reply = handle.stream(HELLO, max_tokens=12, temperature=0.0)
        first = next(reply)
        time.sleep(1.6)
        assert reg.is_loaded(Tier.OMNI_QUALITY)
        assert first + "".join(reply)
        # idle now: the timer unloads it after ttl_s (gone from the books once it is freed)
        key = reg.key(Tier.OMNI_QUALITY)
        assert wait_until(lambda: reg.residency.state(key) is None, timeout=15)
        after = memory.sample()
        print(f"RssAnon before {before.anon_mb:.0f} MB, loaded {loaded.anon_mb:.0f} MB, "
              f"after ttl {after.anon_mb:.0f} MB")
        assert loaded.anon_mb - after.anon_mb > 150
        gone = [e for e in seen if e.kind is EventKind.UNLOADED]
        assert gone and "ttl" in gone[-1].reason
    finally:
        reg.close()


def test_tight_budget_evicts_least_recently_used_then_refuses(tmp_path, smollm2, gemma):
    tiers = {
        "tiny": tier(smollm2),
        "expert": tier(gemma),
        "omni_quality": tier(gemma, n_ctx=384, use_mmap=False),
        "omni_fast": tier(smollm2, n_ctx=512),
    }
    probe = registry(tmp_path, 100_000, **tiers)
    a = probe.estimate(Tier.TINY).total_mb
    b = probe.estimate(Tier.EXPERT).total_mb
    c = probe.estimate(Tier.OMNI_QUALITY).total_mb
    probe.close()
    budget = a + 1.3 * max(b, c)
    assert a + b <= budget < a + b + c
    reg = registry(tmp_path, budget, **tiers)
    seen = events(reg)
    try:
        reg.backend(Tier.TINY)
        reg.backend(Tier.EXPERT)
        # using tiny makes expert the least recently used
        assert "".join(reg.backend(Tier.TINY).stream(HELLO, max_tokens=4, temperature=0.0))
        adm = reg.can_load(Tier.OMNI_QUALITY)
        assert adm.ok and adm.evicts == (reg.key(Tier.EXPERT),)
        reg.backend(Tier.OMNI_QUALITY)
        assert reg.is_loaded(Tier.TINY) and reg.is_loaded(Tier.OMNI_QUALITY)
        assert not reg.is_loaded(Tier.EXPERT)
        evicted = [e for e in seen if e.kind is EventKind.UNLOADED]
        assert [e.key for e in evicted] == [reg.key(Tier.EXPERT)]
        assert "evicted to make room" in evicted[0].reason
        assert sum(i.charged_mb for i in reg.resident()) <= budget
        # with both residents pinned nothing can make room: refused, with the reason
        reg.pin(Tier.TINY)
        reg.pin(Tier.OMNI_QUALITY)
        assert not reg.can_load(Tier.EXPERT).ok
        with pytest.raises(ModelUnavailable, match="budget is free") as exc:
            reg.backend(Tier.EXPERT)
        assert "pinned" in str(exc.value)
        assert any(e.kind is EventKind.REFUSED for e in seen)
        # the residents keep answering
        assert "".join(reg.backend(Tier.TINY).stream(HELLO, max_tokens=4, temperature=0.0))
    finally:
        reg.close()


def test_concurrent_requests_load_once_and_loading_is_visible(tmp_path, gemma, smollm2):
    reg = registry(tmp_path, 4096, omni_fast=tier(smollm2), tiny=tier(smollm2),
                   expert=tier(gemma), omni_quality=tier(gemma))
    key = reg.key(Tier.EXPERT)
    during: list[tuple] = []

    def on_event(e: ResidencyEvent) -> None:
        if e.kind is EventKind.LOADING:
            snap = {i.key: i.state for i in reg.residency.snapshot()}
            during.append((reg.residency.state(key), snap.get(key), reg.is_loaded(Tier.EXPERT)))

    reg.subscribe(on_event)
    seen = events(reg)
    start = threading.Barrier(4)
    got: list[object] = []
    errors: list[BaseException] = []

    def ask() -> None:
        start.wait()
        try:
            got.append(reg.backend(Tier.EXPERT))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and len(got) == 4
        assert len({id(h) for h in got}) == 1
        assert [e.kind for e in seen if e.key == key].count(EventKind.LOADED) == 1
        assert [e.kind for e in seen if e.key == key].count(EventKind.LOADING) == 1
        assert during == [(ResidentState.LOADING, ResidentState.LOADING, False)]
        assert reg.is_loaded(Tier.EXPERT)
    finally:
        reg.close()


def test_reply_can_be_cancelled_mid_stream_and_the_model_is_released(tmp_path, smollm2, gemma):
    reg = registry(tmp_path, 4096, omni_fast=tier(smollm2), tiny=tier(smollm2),
                   expert=tier(gemma), omni_quality=tier(gemma))
    try:
        cancel = CancelToken()
        got = []
        for chunk in reg.backend(Tier.TINY).stream(
            [Message("user", "Count from one to one hundred.")], max_tokens=200,
            temperature=0.0, cancel=cancel,
        ):
            got.append(chunk)
            info = reg.residency.info(reg.key(Tier.TINY))
            assert info is not None and info.in_use == 1  # busy while replying
            if len(got) == 3:
                cancel.cancel()
        assert len(got) == 3
        info = reg.residency.info(reg.key(Tier.TINY))
        assert info is not None and info.in_use == 0
        # a reply in progress is never cut off by an unload: it waits, then gives up
        reply = reg.backend(Tier.TINY).stream(HELLO, max_tokens=8, temperature=0.0)
        next(reply)
        with pytest.raises(ModelError, match="still answering"):
            reg.unload(Tier.TINY, wait_s=0.3)
        assert "".join(reply) is not None and reg.is_loaded(Tier.TINY)
        reg.unload(Tier.TINY)  # idle again, so it may go
        assert not reg.is_loaded(Tier.TINY)
    finally:
        reg.close()


def test_long_context_is_a_second_resident_of_the_same_file(tmp_path, smollm2, gemma):
    reg = registry(tmp_path, 4096, omni_fast=tier(smollm2), omni_quality=tier(gemma),
                   expert=tier(smollm2, n_ctx=256, n_ctx_long=1024), tiny=tier(gemma))
    try:
        short = reg.estimate(Tier.EXPERT)
        long = reg.estimate(Tier.EXPERT, long_context=True)
        assert long.weights_file == short.weights_file and long.extra_mb > short.extra_mb
        reg.backend(Tier.EXPERT)
        before = reg.residency.used_mb()
        reply = "".join(reg.backend(Tier.EXPERT, long_context=True).stream(
            HELLO, max_tokens=4, temperature=0.0))
        assert reply
        assert reg.is_loaded(Tier.EXPERT) and reg.is_loaded(Tier.EXPERT, long_context=True)
        # the mmap'd weights are shared: the second context is charged without them
        added = reg.residency.used_mb() - before
        assert added < long.weights_mb + long.extra_mb
        assert reg.unload(Tier.EXPERT)
        assert not reg.is_loaded(Tier.EXPERT, long_context=True)
    finally:
        reg.close()


def _load_voice_parts(reg: ModelRegistry, models_dir: Path) -> dict[str, object]:
    """Whisper tiny.en loaded for real under `track`, the Piper voice registered by size."""
    from faster_whisper import WhisperModel

    from sarai.models import starter

    held: dict[str, object] = {}
    with reg.residency.track("asr:whisper-tiny-en", "Whisper tiny.en", ResidentKind.ASR):
        held["asr"] = WhisperModel(str(starter.CATALOGUE["whisper-tiny-en"].path(models_dir)),
                                   device="cpu", compute_type="int8", cpu_threads=1)
    voice = starter.CATALOGUE["piper-joe-en"].path(models_dir)
    reg.residency.register("tts:piper-joe-en", "Piper joe", ResidentKind.TTS,
                           voice.stat().st_size / memory.MIB)
    return held


def test_asr_and_tts_count_against_the_budget(tmp_path, models_dir, smollm2, gemma):
    tiers = {"omni_fast": tier(smollm2), "tiny": tier(smollm2), "expert": tier(gemma),
             "omni_quality": tier(gemma)}
    reg = registry(tmp_path, 4096, **tiers)
    try:
        held = _load_voice_parts(reg, models_dir)
        infos = {i.key: i for i in reg.resident(include_ollama=False)}
        asr, tts = infos["asr:whisper-tiny-en"], infos["tts:piper-joe-en"]
        assert asr.kind == "asr" and asr.pinned and asr.charged_mb > 10
        assert tts.kind == "tts" and tts.charged_mb == pytest.approx(60.3, abs=1)
        assert reg.residency.used_mb() == pytest.approx(asr.charged_mb + tts.charged_mb, abs=1)
        expert = reg.estimate(Tier.EXPERT).total_mb
        del held
    finally:
        reg.close()
    # with a budget the voice parts leave too little of, the model is refused, naming them
    reg = registry(tmp_path, asr.charged_mb + tts.charged_mb + expert - 30, **tiers)
    try:
        reg.residency.register("asr:whisper-tiny-en", "Whisper tiny.en", ResidentKind.ASR,
                               asr.charged_mb)
        reg.residency.register("tts:piper-joe-en", "Piper joe", ResidentKind.TTS, tts.charged_mb)
        with pytest.raises(ModelUnavailable, match="Whisper tiny.en"):
            reg.backend(Tier.EXPERT)
    finally:
        reg.close()


def test_bad_files_and_oversized_models_fail_clearly_while_others_serve(tmp_path, smollm2,
                                                                       gemma):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm2.read_bytes()[:300_000])
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 4096)
    small = 260.0  # MB: smollm2 fits, gemma (about 290 MB at this context) does not
    reg = registry(tmp_path, small, omni_fast=tier(cut), omni_quality=tier(junk),
                   expert=tier(gemma), tiny=tier(smollm2))
    try:
        with pytest.raises(ModelError, match="truncated"):
            reg.backend(Tier.OMNI_FAST)
        with pytest.raises(ModelError, match="not a GGUF model file"):
            reg.backend(Tier.OMNI_QUALITY)
        with pytest.raises(ModelUnavailable, match="more than the whole RAM budget"):
            reg.backend(Tier.EXPERT)
        assert not reg.can_load(Tier.EXPERT).ok
        reply = "".join(reg.backend(Tier.TINY).stream(HELLO, max_tokens=8, temperature=0.0))
        assert reply.strip()
        assert [i.tiers for i in reg.resident(include_ollama=False)] == [(Tier.TINY,)]
    finally:
        reg.close()


def test_warm_up_loads_in_the_background_but_does_not_evict_unless_asked(tmp_path, smollm2,
                                                                        gemma):
    reg = registry(tmp_path, 4096, omni_fast=tier(smollm2), tiny=tier(smollm2),
                   expert=tier(gemma), omni_quality=tier(gemma, residency="ttl"))
    try:
        fut = reg.warm_up(Tier.OMNI_QUALITY)
        assert fut.result(timeout=120) is True
        assert reg.is_loaded(Tier.OMNI_QUALITY)
        assert reg.warm_up(Tier.OMNI_QUALITY).result(timeout=10) is True  # already resident
    finally:
        reg.close()
    need = registry(tmp_path, 4096, omni_fast=tier(smollm2), tiny=tier(smollm2),
                    expert=tier(gemma), omni_quality=tier(gemma))
    budget = need.estimate(Tier.TINY).total_mb + need.estimate(Tier.EXPERT).total_mb - 20
    need.close()
    reg = registry(tmp_path, budget, omni_fast=tier(smollm2), tiny=tier(smollm2),
                   expert=tier(gemma), omni_quality=tier(gemma))
    try:
        reg.backend(Tier.TINY)
        assert reg.warm_up(Tier.EXPERT).result(timeout=60) is False  # would evict tiny
        assert reg.is_loaded(Tier.TINY) and not reg.is_loaded(Tier.EXPERT)
        assert reg.warm_up(Tier.EXPERT, evict=True).result(timeout=120) is True
        assert reg.is_loaded(Tier.EXPERT) and not reg.is_loaded(Tier.TINY)
    finally:
        reg.close()
