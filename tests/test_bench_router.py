"""`sarai bench router`: accuracy, confusion matrix and latency, printed and saved as JSON."""

from __future__ import annotations

import json
from pathlib import Path


def test_bench_router_json_on_a_small_spoken_sample(sarai, sarai_env):
    r = sarai("bench", "router", "--json", "--limit", "2", timeout=600)
    assert r.code == 0, r.err
    (line,) = [x for x in r.out.splitlines() if x.strip()]
    res = json.loads(line)
    assert {"accuracy", "confusion", "latency_ms", "train", "eval"} <= res.keys()
    assert 0.0 <= res["accuracy"] <= 1.0
    assert res["latency_ms"]["p50"] <= res["latency_ms"]["p99"]
    assert res["measured_on"] == "eval, spoken"

    spoken = res["eval"]["spoken"]
    assert spoken["n"] == 4 and set(spoken["by_lang"]) == {"en", "es"}
    assert sum(sum(row.values()) for row in res["confusion"].values()) == 4
    assert "audio_heavy_accuracy" in spoken  # the spread sample includes a turn over sound
    assert spoken["asr_ms"]["p50"] > 0

    train, typed = res["train"], res["eval"]["typed"]
    assert train["n"] > typed["n"] > 50
    assert train["accuracy"] >= typed["accuracy"] >= 0.85
    assert set(typed["confusion"]) == {"omni_fast", "omni_quality"}
    for m in res["misses"]:
        assert m["expected"] != m["predicted"] and m["reason"]

    saved = list((Path(sarai_env["XDG_STATE_HOME"]) / "sarai" / "bench").glob("router-*.json"))
    assert len(saved) == 1
    assert json.loads(saved[0].read_text())["accuracy"] == res["accuracy"]


def test_bench_router_text_only_human_output(sarai):
    r = sarai("bench", "router", "--text-only")
    assert r.code == 0, r.err
    assert "train, typed" in r.out and "eval, typed" in r.out and "eval, spoken" not in r.out
    assert "Confusion (eval, typed" in r.out
    assert "Decision latency: p50" in r.out and "saved to" in r.out
