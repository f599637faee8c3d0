"""The `sarai` command end to end: real VAD, ASR, llama.cpp, Piper — and clear errors."""

import json

import numpy as np
import pytest

from conftest import REPO
from sarai.audio.pcm import read_audio, write_wav

TIMING_KEYS = {"asr", "route", "ttft", "first_audio", "total"}


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_listen_answers_each_utterance(sarai, make_speech, tmp_path):
    wav = make_speech(["Hello, what is your name?",
                       "Please explain why the sky is blue, step by step."],
                      pause_s=1.2, rate=44100, channels=2)
    out = tmp_path / "reply.wav"
    r = sarai("listen", "--input", str(wav), "--output", str(out), "--json")
    assert r.code == 0, r.err
    recs = records(r.out)
    assert len(recs) == 2
    first, second = recs
    assert "name" in first["transcript"].lower()
    assert "explain" in second["transcript"].lower() and "blue" in second["transcript"].lower()
    assert first["tier"] == "omni_fast" and "omni_fast" in first["reason"]
    assert second["tier"] == "omni_quality" and "explain" in second["reason"]
    for rec in recs:
        assert rec["reply"].strip()
        assert rec["timings"].keys() >= TIMING_KEYS
        t = rec["timings"]
        assert t["ttft"] <= t["total"] and t["first_audio"] <= t["total"]
    reply = read_audio(out)
    assert reply.duration_s > 1.0
    assert np.abs(reply.samples).max() > 3000
    assert "Production models not found" in r.err  # said once, plainly
    assert r.err.count("Production models not found") == 1


def test_listen_bundled_recording_human_output(sarai, tmp_path):
    r = sarai("listen", "--input", str(REPO / "audio/data/hello.wav"),
              "--output", str(tmp_path / "a.wav"))
    assert r.code == 0, r.err
    assert r.out.count("heard:") == 2 and "tier:" in r.out and "timings:" in r.out
    assert "first audio" in r.out


def test_ask_no_speak_prints_the_answer(sarai):
    r = sarai("ask", "--no-speak", "Say hello to me.")
    assert r.code == 0, r.err
    assert r.out.strip()


def test_ask_json_with_spoken_output(sarai, tmp_path):
    out = tmp_path / "ask.wav"
    r = sarai("ask", "--json", "--output", str(out), "How are you today?")
    assert r.code == 0, r.err
    (rec,) = records(r.out)
    assert rec["source"] == "text" and rec["tier"] == "omni_fast" and rec["reply"]
    assert rec["language"] == "en"
    assert "first_audio" in rec["timings"]
    assert read_audio(out).duration_s > 0.3


def test_a_typed_spanish_question_is_answered_in_spanish(sarai, tmp_path):
    """Without --language, the words of a typed turn say its language (and so its voice)."""
    r = sarai("ask", "--no-speak", "--json", "¿Me cuentas un chiste corto, por favor?")
    assert r.code == 0, r.err
    (rec,) = records(r.out)
    assert rec["language"] == "es" and rec["reply"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p, "audio file not found"),
    (lambda p: (p.write_bytes(b"RIFF....WAVEjunk" * 10), p)[1], "not a readable audio file"),
    (lambda p: (write_wav(p, np.zeros(48000, np.int16), 16000), p)[1], "no speech found"),
])
def test_listen_bad_input_is_one_clear_line(sarai, tmp_path, make, message):
    wav = make(tmp_path / "in.wav")
    r = sarai("listen", "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert r.code == 1
    assert message in r.err
    assert "Traceback" not in r.err
    assert r.err.strip().splitlines()[-1].startswith("sarai: error:")


def test_missing_model_file_is_a_clear_error(sarai, tmp_path, sarai_env):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"models:\n  omni_fast:\n    model: {tmp_path}/gone.gguf\n    starter: null\n")
    r = sarai("--config", str(cfg), "ask", "--no-speak", "--json", "hi")
    # One clear sentence names the missing file, and another tier answers the question.
    assert r.code == 0, r.err
    assert "omni_fast: " in r.err and "gone.gguf not found" in r.err
    assert "Traceback" not in r.err
    rec = json.loads(r.out.strip().splitlines()[-1])
    assert rec["error"] is None and rec["reply"] and rec["tier"] == "tiny"
    assert "omni_fast cannot serve now → tiny" in rec["reason"]


def test_bad_config_line_is_named(sarai, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("audio:\n  vad:\n    frame_ms: 25\n")
    r = sarai("--config", str(cfg), "ask", "--no-speak", "hi")
    assert r.code == 2
    assert f"{cfg}:3: audio.vad.frame_ms" in r.err
    v = sarai("config", "validate", str(cfg))
    assert v.code == 2 and f"{cfg}:3" in v.err


def test_config_show_and_validate_ok(sarai, tmp_path):
    r = sarai("config", "show")
    assert r.code == 0 and "omni_quality:" in r.out
    good = tmp_path / "good.yaml"
    good.write_text("routing:\n  short_max_words: 10\n")
    assert sarai("config", "validate", str(good)).code == 0
    env_cfg = sarai("--config", str(good), "config", "show")
    assert "short_max_words: 10" in env_cfg.out


def test_no_audio_device_is_a_clear_error(sarai, tmp_path):
    # One-shot commands stop with one clear line; the daemon (`sarai run`) instead stays up and
    # retries a missing microphone (see test_voice_loop and test_daemon).
    cfg = tmp_path / "c.yaml"
    cfg.write_text("audio:\n  output_device: no-such-speaker\n")
    r = sarai("--config", str(cfg), "ask", "hello", timeout=120)
    assert r.code == 1
    assert "no speaker available" in r.err and "Traceback" not in r.err
    assert r.err.strip().splitlines()[-1].startswith("sarai: error:")


@pytest.mark.parametrize("cmd", [[], ["listen"], ["ask"], ["run"], ["setup"], ["config"]])
def test_help_explains_itself(sarai, cmd):
    r = sarai(*cmd, "--help")
    assert r.code == 0 and "usage: sarai" in r.out and len(r.out) > 200
