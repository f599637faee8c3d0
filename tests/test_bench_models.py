"""`sarai bench models`: the structure and bookkeeping of a real run (never its speed)."""

from __future__ import annotations

import json
from pathlib import Path

from sarai.models.bench import check_kpi, copy_bandwidth_gbs
from sarai.models.ggufinfo import read_info

KEYS = {"tier", "model", "decode_tok_s", "bare_decode_tok_s", "ratio", "ttft_ms", "load_s",
        "rss_mb", "bandwidth_efficiency"}


def test_bench_models_json_saves_the_run(sarai, tmp_path, smollm2):
    weights = read_info(smollm2).tensor_bytes
    r = sarai("bench", "models", "--json", "--tier", "omni_fast", "--tier", "tiny",
              "--max-tokens", "12")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert [t["tier"] for t in out["tiers"]] == ["omni_fast", "tiny"]
    for row in out["tiers"]:
        assert row.keys() >= KEYS
        assert row["model"] == "SmolLM2-135M-Instruct (Q4_1 GGUF)" and row["starter"]
        assert row["threads"] >= 1
        assert row["load_s"] > 0 and row["bare_load_s"] > 0 and row["ttft_ms"] > 0
        assert row["decode_tok_s"] > 0 and row["bare_decode_tok_s"] > 0
        assert row["ratio"] == round(row["decode_tok_s"] / row["bare_decode_tok_s"], 3)
        assert row["rss_mb"] > 0 and row["bandwidth_efficiency"] > 0
        assert row["bytes_per_token"] > weights  # every weight, plus the KV cache, per token
        assert row["kpi_min_tok_s"] is None and row["kpi_ok"] is None  # starter: not checked
    # both tiers use the same file and settings: measured once, reported for each
    a, b = out["tiers"]
    assert {k: v for k, v in a.items() if k != "tier"} == {k: v for k, v in b.items()
                                                           if k != "tier"}
    assert out["copy_bandwidth_gbs"] > 0 and out["kpis_ok"] is None
    saved = Path(out["saved"])
    assert saved.parent == tmp_path / "state" / "sarai" / "bench"
    assert saved.name.startswith("models-") and saved.suffix == ".json"
    assert json.loads(saved.read_text())["tiers"] == out["tiers"]


def test_bench_models_text_output_names_the_file(sarai, tmp_path):
    r = sarai("bench", "models", "--tier", "tiny", "--max-tokens", "4")
    assert r.code == 0, r.err
    assert "RATIO" in r.out and "tiny" in r.out and "Saved " in r.out
    assert len(list((tmp_path / "state" / "sarai" / "bench").glob("models-*.json"))) == 1


def test_kpis_apply_to_production_models_only():
    row = {"tier": "tiny", "starter": False, "decode_tok_s": 9.5}
    check_kpi(row)
    assert row["kpi_min_tok_s"] == 8.0 and row["kpi_ok"] is True
    row = {"tier": "expert", "starter": False, "decode_tok_s": 2.0}
    check_kpi(row)
    assert row["kpi_min_tok_s"] == 3.0 and row["kpi_ok"] is False
    row = {"tier": "omni_fast", "starter": True, "decode_tok_s": 2.0}
    check_kpi(row)
    assert row["kpi_ok"] is None
    row = {"tier": "omni_quality", "starter": False, "decode_tok_s": 2.0}
    check_kpi(row)
    assert row["kpi_ok"] is None  # the seeds set no floor for the 7B


def test_copy_bandwidth_is_measured():
    assert copy_bandwidth_gbs(size_mb=16, repeats=2) > 0
