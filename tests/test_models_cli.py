"""`sarai models list|ps|load|unload|pin` as a user runs them (the real command, real models)."""

from __future__ import annotations

import json

import yaml


def test_list_json_names_every_model_and_the_tier_it_serves(sarai, smollm2, gemma):
    r = sarai("models", "list", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    rows = {m["path"]: m for m in out["models"]}
    smol, gem = rows[str(smollm2)], rows[str(gemma)]
    assert smol["source"] == "starter" and smol["quantization"] == "Q4_1"
    assert smol["parameters_label"] == "135M" and smol["architecture"] == "llama"
    # Every starter tier runs on the chat model; the pretrained Gemma serves none.
    assert sorted(smol["tiers"]) == ["expert", "omni_fast", "omni_quality", "tiny"]
    assert gem["tiers"] == [] and gem["architecture"] == "gemma3"
    assert gem["size_mb"] == round(gemma.stat().st_size / 2**20, 1)
    assert out["tiers"]["omni_fast"]["starter"] is True
    assert "Qwen2.5-Omni-3B-Q4_K_M.gguf not found" in out["tiers"]["omni_fast"]["why"]
    text = sarai("models", "list")
    assert text.code == 0 and "SmolLM2-135M-Instruct.Q4_1.gguf" in text.out
    assert "omni_fast, omni_quality, expert, tiny" in text.out


def test_load_reports_measured_ram_and_ps_shows_budget(sarai):
    r = sarai("models", "load", "tiny", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    loaded = out["loaded"]
    assert loaded["state"] == "resident" and loaded["tiers"] == ["tiny"]
    assert loaded["policy"] == "on_demand" and not loaded["pinned"]
    assert loaded["anon_mb"] > 0 and loaded["file_mb"] > 0 and loaded["estimate_mb"] > 50
    assert out["budget_mb"] == 12 * 1024 and out["used_mb"] >= loaded["estimate_mb"]
    assert out["load_s"] > 0
    ps = sarai("models", "ps", "--json")
    assert ps.code == 0, ps.err
    assert json.loads(ps.out)["resident"] == []  # a fresh process holds nothing
    text = sarai("models", "load", "omni_quality")
    assert text.code == 0, text.err
    assert "Loaded SmolLM2-135M-Instruct" in text.out and "ttl" in text.out and "60s" in text.out


def test_unload_and_pin_act_in_process_and_pin_can_be_saved(sarai, sarai_env, tmp_path):
    r = sarai("models", "unload", "expert")
    assert r.code == 0 and "not resident" in r.out
    r = sarai("models", "pin", "expert", "--save")
    assert r.code == 0, r.err
    assert "is pinned" in r.out
    cfg = tmp_path / "config" / "sarai" / "config.yaml"
    assert yaml.safe_load(cfg.read_text())["models"]["expert"] == {"residency": "pinned"}
    shown = sarai("config", "show")
    assert yaml.safe_load(shown.out)["models"]["expert"]["residency"] == "pinned"


def test_a_broken_model_file_is_one_clear_error(sarai, tmp_path, smollm2):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smollm2.read_bytes()[:400_000])
    cfg = tmp_path / "my.yaml"
    cfg.write_text(f"models:\n  tiny:\n    model: {cut}\n    starter: null\n")
    r = sarai("--config", str(cfg), "models", "load", "tiny")
    assert r.code == 1
    assert r.err.startswith("sarai: error: ") and "truncated" in r.err
    assert "Traceback" not in r.err
    big = tmp_path / "big.yaml"
    big.write_text("residency:\n  budget_gb: 0.1\n")
    r = sarai("--config", str(big), "models", "load", "omni_quality")
    assert r.code == 1 and "more than the whole RAM budget of 0.1 GB" in r.err
