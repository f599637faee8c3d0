"""`sarai route`: decisions for typed text and recordings, one JSON line per input."""

from __future__ import annotations

import json

import numpy as np

from conftest import REPO
from sarai.audio.pcm import write_wav
from sarai.routing.spoken import over_background, speak


def lines(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_route_text_json_one_line_per_input(sarai):
    r = sarai("route", "--json", "--text", "Hi! How are you today?",
              "--text", "Explain step by step how vaccines train the immune system.",
              "--text", "Piénsalo bien: ¿qué cocino hoy?", "--text", "[music]")
    assert r.code == 0, r.err
    social, hard, think, noise = lines(r.out)
    for rec in (social, hard, think, noise):
        assert {"input", "tier", "reason", "scores"} <= rec.keys()
    assert social["input"] == "Hi! How are you today?"
    assert social["tier"] == "omni_fast" and social["reason"].startswith("empathy ")
    assert hard["tier"] == "omni_quality" and hard["reason"].startswith("complexity ")
    assert hard["scores"]["complexity"] >= 0.5 and hard["scores"]["words"] == 10
    assert think["tier"] == "omni_quality" and think["rule"] == "explicit_think"
    assert noise["action"] == "skip" and "only noise" in noise["reason"]


def test_route_text_human_output(sarai):
    r = sarai("route", "--text", "What is the difference between a comet and an asteroid?")
    assert r.code == 0, r.err
    assert "tier:   omni_quality — complexity" in r.out
    assert "ladder: omni_quality → expert → omni_fast → tiny" in r.out
    assert "scores: words 10" in r.out and "route " in r.out


def test_route_with_available_tiers_and_an_attachment(sarai):
    wav = str(REPO / "audio/data/hello.wav")
    r = sarai("route", "--json", "--text", "what is said here?", "--attach", wav,
              "--available", "omni_fast,tiny")
    assert r.code == 0, r.err
    (rec,) = lines(r.out)
    assert rec["tier"] == "omni_fast" and rec["candidates"] == ["omni_fast"]
    assert rec["reason"].startswith("audio attached (hello.wav) → omni_quality; "
                                    "omni_quality cannot serve now → omni_fast")


def test_route_audio_recordings_english_spanish_and_over_music(sarai, make_speech, tmp_path):
    en = make_speech(["Please explain how a rainbow forms, step by step."])
    es = make_speech(["Hola, ¿cómo estás?"], voice="es-419", speed=120)
    loud = tmp_path / "music.wav"
    write_wav(loud, over_background(speak("Hello, how are you?", "en", tail_s=1.0),
                                    "music", 6.0, seed=4), 16000)
    r = sarai("route", "--json", "--audio", str(en), str(loud))
    assert r.code == 0, r.err
    first, second = lines(r.out)
    assert first["input"] == str(en) and "rainbow" in first["transcript"].lower()
    assert first["tier"] == "omni_quality" and first["asr_ms"] > 0
    assert first["scores"]["audio_s"] > 1 and 0 < first["scores"]["speech_ratio"] <= 1
    assert second["tier"] == "omni_quality" and second["rule"] == "audio"
    assert "background music" in second["reason"]
    r = sarai("route", "--json", "--language", "es", "--audio", str(es))
    assert r.code == 0, r.err
    (rec,) = lines(r.out)
    assert rec["language"] == "es" and rec["tier"] == "omni_fast"


def test_route_bad_recording_is_reported_and_others_still_routed(sarai, make_speech, tmp_path):
    good = make_speech(["What time is it?"])
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(32000, np.int16), 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF0000WAVEnope" * 4)
    r = sarai("route", "--json", "--audio", str(silent), str(junk), str(good))
    assert r.code == 1
    (rec,) = lines(r.out)
    assert rec["input"] == str(good)
    assert f"sarai: error: no speech found in {silent}" in r.err
    assert "not a readable audio file" in r.err and "Traceback" not in r.err


def test_route_bad_arguments_are_one_clear_line(sarai, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    for args, message in [
        ((), "nothing to route"),
        (("--text", "hi", "--attach", str(notes)), "cannot attach: notes.txt is not"),
        (("--text", "hi", "--available", "omni_fast,huge"), "unknown tier(s) in --available: huge"),
    ]:
        r = sarai("route", *args)
        assert r.code == 1, (args, r.err)
        assert r.err.strip().splitlines()[-1].startswith("sarai: error: ")
        assert message in r.err and "Traceback" not in r.err


def test_route_uses_the_config_policy(sarai, sarai_env, tmp_path):
    cfg = tmp_path / "config" / "sarai" / "config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("routing:\n  tiers:\n    fast: tiny\n  thresholds:\n    empathy: 0.99\n")
    r = sarai("route", "--json", "--text", "Thanks, that's kind of you.")
    assert r.code == 0, r.err
    (rec,) = lines(r.out)
    assert rec["tier"] == "tiny" and rec["rule"] == "default"
    cfg.write_text("routing:\n  weights:\n    complexity: -1\n")
    r = sarai("route", "--text", "hi")
    assert r.code == 2 and "routing.weights.complexity" in r.err
