"""GGUF headers and finding models on the machine: Ollama's store, the HF cache, folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sarai.models import memory
from sarai.models.backend import Message
from sarai.models.discovery import discover, find_model, scan_hf_cache, scan_ollama
from sarai.models.errors import ModelError
from sarai.models.ggufinfo import read_info
from sarai.models.llamacpp import LlamaCppBackend
from sarai.models.registry import ModelRegistry
from sarai.models.settings import ModelsSettings, ResidencySettings, Tier, TierSettings

DIGEST = "sha256:" + "ab" * 32
PROJ = "sha256:" + "cd" * 32


def test_header_facts_of_the_starter_models(smollm2, gemma):
    s = read_info(smollm2)
    assert (s.architecture, s.parameters_label, s.quantization) == ("llama", "135M", "Q4_1")
    assert s.context_length == 8192 and s.n_layer == 30 and s.kv_heads == (3,) * 30
    assert 130e6 < s.parameters < 140e6 and s.n_vocab == 49152
    g = read_info(gemma)
    assert (g.architecture, g.quantization, g.context_length) == ("gemma3", "Q4_K_M", 32768)
    assert g.n_vocab == 262144 and g.key_length == 256 and not g.is_projector
    assert g.tensor_bytes < g.size_bytes


def test_estimate_is_close_to_what_loading_really_takes(gemma):
    est = read_info(gemma).estimate_mb(512, n_batch=512)
    memory.release_freed()
    before = memory.sample()
    b = LlamaCppBackend(gemma, n_ctx=512, threads=2, n_batch=512, use_mmap=False)
    try:
        took = memory.sample().minus(before).total_mb
    finally:
        b.close()
    print(f"estimated {est.total_mb:.0f} MB, measured {took:.0f} MB")
    assert 0.8 * took <= est.total_mb <= 1.3 * took


def test_kv_cache_type_shrinks_the_estimate(gemma):
    info = read_info(gemma)
    assert info.kv_cache_mb(4096, "q8_0") < info.kv_cache_mb(4096, "f16") / 1.8
    assert info.kv_cache_mb(4096, "q4_0") < info.kv_cache_mb(4096, "q8_0")


def test_bad_files_are_named_in_one_sentence(tmp_path, smollm2):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelError, match="is not a GGUF model file"):
        read_info(junk)
    head = tmp_path / "head.gguf"
    head.write_bytes(smollm2.read_bytes()[:5000])  # cut inside the metadata
    with pytest.raises(ModelError, match="truncated"):
        read_info(head)
    body = tmp_path / "body.gguf"
    body.write_bytes(smollm2.read_bytes()[:20_000_000])  # header whole, tensors cut
    with pytest.raises(ModelError, match=r"is truncated: its tensors need \d+\.\d MiB"):
        read_info(body)
    with pytest.raises(ModelError, match="cannot read"):
        read_info(tmp_path / "absent.gguf")


def ollama_store(root: Path, weights: Path, projector: Path | None = None) -> Path:
    """An Ollama store as `ollama pull` leaves it: manifests naming blobs by digest."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    (blobs / DIGEST.replace(":", "-")).symlink_to(weights)
    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": DIGEST},
              {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:00"}]
    if projector is not None:
        (blobs / PROJ.replace(":", "-")).symlink_to(projector)
        layers.append({"mediaType": "application/vnd.ollama.image.projector", "digest": PROJ})
    for parts in (("registry.ollama.ai", "library", "smol", "135m"),
                  ("hf.co", "LiquidAI", "LFM2-1.2B-GGUF", "Q4_K_M")):
        mf = root / "manifests" / Path(*parts)
        mf.parent.mkdir(parents=True, exist_ok=True)
        mf.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    bad = root / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    return root


def hf_cache(root: Path, file: Path) -> Path:
    repo = root / "models--ggml-org--Qwen2.5-Omni-3B-GGUF"
    (repo / "blobs").mkdir(parents=True)
    blob = repo / "blobs" / "f00d"
    blob.symlink_to(file)
    snap = repo / "snapshots" / "75f1b73b"
    snap.mkdir(parents=True)
    (snap / "Qwen2.5-Omni-3B-Q4_K_M.gguf").symlink_to(Path("../../blobs/f00d"))
    (snap / "gone.gguf").symlink_to(Path("../../blobs/missing"))  # dangling: skipped
    return root


def test_ollama_manifests_lead_to_blobs_and_projectors(tmp_path, smollm2, gemma):
    store = ollama_store(tmp_path / "ollama", smollm2, projector=gemma)
    found = {f.label: f for f in scan_ollama([store, tmp_path / "absent"])}
    assert set(found) == {"smol:135m", "hf.co/LiquidAI/LFM2-1.2B-GGUF:Q4_K_M"}
    smol = found["smol:135m"]
    assert smol.source == "ollama" and smol.path.name == DIGEST.replace(":", "-")
    assert smol.projector is not None and smol.projector.resolve() == gemma
    assert smol.info().architecture == "llama"  # read from the blob's header


def test_discover_searches_every_place_once(tmp_path, models_dir, smollm2, gemma):
    store = ollama_store(tmp_path / "ollama", smollm2)
    cache = hf_cache(tmp_path / "hf", gemma)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "again.gguf").symlink_to(gemma)  # the same file as the HF one: listed once
    found = discover(models_dir, [extra], ollama=[store], hf=cache)
    sources = {(f.source, f.path.resolve()) for f in found}
    assert ("starter", smollm2) in sources and ("starter", gemma) in sources
    assert len([f for f in found if f.path.resolve() == gemma]) == 1
    labels = {f.label for f in scan_hf_cache(cache)}
    assert labels == {"ggml-org/Qwen2.5-Omni-3B-GGUF/Qwen2.5-Omni-3B-Q4_K_M.gguf"}
    every = list(scan_hf_cache(cache)) + list(scan_ollama([store]))
    assert find_model("smol:135m", every).label == "smol:135m"
    assert find_model("smol", every) is None  # that would mean smol:latest
    assert find_model("Qwen2.5-Omni-3B-Q4_K_M.gguf", every).source == "huggingface"
    assert find_model("nothing.gguf", every) is None


def test_a_tier_can_name_an_ollama_model_and_llama_cpp_loads_its_blob(tmp_path, smollm2, gemma,
                                                                      monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama_store(tmp_path / "ollama", smollm2)))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache(tmp_path / "hf", gemma)))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")  # no real stores
    ts = {"starter": "smollm2-135m", "n_ctx": 256, "threads": 2}
    settings = ModelsSettings(
        omni_fast=TierSettings(model="Qwen2.5-Omni-3B-Q4_K_M.gguf", **ts),
        omni_quality=TierSettings(model="Qwen2.5-Omni-7B-Q4_K_M.gguf", **ts),
        expert=TierSettings(model="gemma-3-270m-q4_k_m.gguf", **ts),
        tiny=TierSettings(model="hf.co/LiquidAI/LFM2-1.2B-GGUF:Q4_K_M", **ts),
    )
    models = tmp_path / "models"
    models.mkdir()
    reg = ModelRegistry(settings, models, residency=ResidencySettings(budget_gb=2))
    try:
        tiny = reg.resolve(Tier.TINY)
        assert not tiny.starter and tiny.path is not None
        assert tiny.path.parent == tmp_path / "ollama" / "blobs"
        assert reg.resolve(Tier.OMNI_FAST).path.parent.name == "75f1b73b"
        assert reg.resolve(Tier.OMNI_QUALITY).starter
        chat = [Message("system", "You are a helpful assistant."), Message("user", "Hi!")]
        assert "".join(reg.backend(Tier.TINY).stream(chat, max_tokens=6, temperature=0.0))
    finally:
        reg.close()
    assert os.environ["OLLAMA_MODELS"].endswith("ollama")
