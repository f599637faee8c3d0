"""`sarai ask --audio/--image/--video` through the real command."""

from __future__ import annotations

import json
import shutil

from omni_fixtures import tiny, write_video  # noqa: F401
from PIL import Image


def _config(tmp_path, tiny):  # noqa: F811
    cfg = tmp_path / "omni.yaml"
    cfg.write_text(
        "models:\n  omni_fast:\n"
        f"    model: {tiny.gguf}\n    mmproj: {tiny.mmproj}\n"
        "    n_ctx: 4096\n    max_tokens: 6\n"
    )
    return cfg


def test_audio_goes_to_an_omni_tier_with_a_projector(sarai, tmp_path, tiny, make_speech):  # noqa: F811
    clip = make_speech(["what is the capital of France"], rate=16000)
    r = sarai("--config", str(_config(tmp_path, tiny)), "ask", "--no-speak", "--json",
              "--audio", str(clip), "what did I say?")
    assert r.code == 0, r.err
    rec = json.loads(r.out.strip().splitlines()[-1])
    assert rec["source"] == "media" and rec["tier"] == "omni_fast"
    assert rec["model"] == tiny.gguf.name
    assert "transcribed" not in rec["reason"]
    assert rec["audio_s"] > 1.0


def test_image_and_video_are_accepted(sarai, tmp_path, tiny):  # noqa: F811
    img = tmp_path / "p.png"
    Image.new("RGB", (200, 150), (90, 10, 10)).save(img)
    video = write_video(tmp_path / "v.mp4", seconds=2.0)
    r = sarai("--config", str(_config(tmp_path, tiny)), "ask", "--no-speak", "--json",
              "--image", str(img), "--video", str(video), "describe")
    assert r.code == 0, r.err
    rec = json.loads(r.out.strip().splitlines()[-1])
    assert rec["model"] == tiny.gguf.name and "left out" not in rec["reason"]


def test_without_a_projector_the_transcript_is_sent_and_the_reason_says_so(sarai, make_speech):
    clip = make_speech(["what is the weather like today"], rate=16000)
    r = sarai("ask", "--no-speak", "--json", "--audio", str(clip))
    assert r.code == 0, r.err
    rec = json.loads(r.out.strip().splitlines()[-1])
    assert "weather" in rec["transcript"].lower()
    assert "no projector configured" in rec["reason"]


def test_attachment_that_lies_about_its_type_is_one_clear_error(sarai, tmp_path):
    png = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(png)
    fake = tmp_path / "clip.wav"
    shutil.copy(png, fake)
    r = sarai("ask", "--no-speak", "--audio", str(fake))
    assert r.code != 0
    assert "sarai: error: clip.wav is not an audio file" in r.err
    assert "Traceback" not in r.err
