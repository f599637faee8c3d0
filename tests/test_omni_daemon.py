"""The real daemon with an Omni tier (the tiny Qwen2.5-Omni GGUF + mmproj), driven through its
control socket: `ask` with only an attachment is answered, and the projector shows in
`models ps` as a resident of its own while it is loaded, and not once it is freed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from daemon_harness import isolated_env, start_daemon, stop_daemon
from omni_fixtures import tiny  # noqa: F401
from PIL import Image

from conftest import REPO

KEEP_S = 15  # long enough to look at it from a second process, short enough to wait out


@pytest.fixture(scope="module")
def env(tmp_path_factory, models_dir: Path, pulse) -> dict[str, str]:
    home = tmp_path_factory.mktemp("omni-daemon")
    return isolated_env(home, models_dir, pulse)


@pytest.fixture(scope="module")
def daemon(env, tiny):  # noqa: F811
    config = ("models:\n  omni_fast:\n"
              f"    model: {tiny.gguf}\n    mmproj: {tiny.mmproj}\n"
              f"    mmproj_keep_s: {KEEP_S}\n    n_ctx: 2048\n    max_tokens: 6\n")
    d = start_daemon(env, config=config)
    yield d
    stop_daemon(d)


def _sarai(env, d, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sarai.daemon.cli", *args], cwd=REPO,
                          env={**env, "XDG_RUNTIME_DIR": str(d.runtime)},
                          capture_output=True, text=True, timeout=120)


def _projectors(resident: list[dict]) -> list[dict]:
    return [r for r in resident if r["kind"] == "mmproj"]


def test_ask_with_only_a_recording_is_heard_and_the_projector_comes_and_goes(
        daemon, env, tiny, make_speech):  # noqa: F811
    events: list[dict] = []
    sub = daemon.client()

    def follow() -> None:
        for ev in sub.subscribe():
            events.append(ev)

    threading.Thread(target=follow, daemon=True).start()
    clip = make_speech(["what is the capital of France"], rate=16000)
    try:
        turn = daemon.call("ask", attachments=[{"path": str(clip), "kind": "audio"}],
                           speak=False)["turn"]
        assert turn["error"] is None and turn["tier"] == "omni_fast", turn
        assert turn["source"] == "media" and turn["model"] == tiny.gguf.name
        assert "transcribed" not in turn["reason"]  # the Omni tier heard the sound itself
        r = _sarai(env, daemon, "models", "ps", "--json")
        assert r.returncode == 0, r.stderr
        ps = json.loads(r.stdout)
        (proj,) = _projectors(ps["resident"])
        assert proj["name"] == tiny.mmproj.name and proj["tiers"] == ["omni_fast"]
        assert proj["charged_mb"] > 0.5 * tiny.mmproj.stat().st_size / 2**20
        assert ps["used_mb"] == pytest.approx(sum(x["charged_mb"] for x in ps["resident"]),
                                              abs=2)
        # One text model for the tier: the media turn did not load a second one.
        fast = [x for x in ps["resident"] if x["kind"] == "llm" and "omni_fast" in x["tiers"]]
        assert len(fast) == 1 and fast[0]["name"] == tiny.gguf.name
        r = _sarai(env, daemon, "models", "ps")
        line = next(x for x in r.stdout.splitlines() if x.startswith(tiny.mmproj.name[:34]))
        assert "mmproj" in line and "omni_fast" in line and "ttl" in line
        assert any(e.get("event") == "residency" and _projectors(e["resident"])
                   for e in list(events))
        # Freed after keep_s: gone from `models ps`, and the tier's model stays.
        daemon.wait_for(lambda: not _projectors(daemon.call("models")["resident"]),
                        KEEP_S + 30, "the projector to be freed")
        view = daemon.call("models")
        assert next(m for m in view["models"] if m["tier"] == "omni_fast")["resident"]
    finally:
        sub.close()


def test_ask_with_only_a_picture_is_answered(daemon, tmp_path):
    img = tmp_path / "p.png"
    Image.new("RGB", (112, 112), (20, 90, 200)).save(img)
    turn = daemon.call("ask", text="", attachments=[{"path": str(img)}], speak=False)["turn"]
    assert turn["error"] is None and turn["tier"] == "omni_fast", turn
    assert "left out" not in turn["reason"] and turn["source"] == "media"
