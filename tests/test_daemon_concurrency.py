"""Typed turns and spoken turns at the same time, on the real daemon and the PulseAudio test
devices: each turn keeps its own words, every turn reaches the history, and `sarai ask` is
the daemon's client when one runs (no models loaded in the asking process)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from daemon_harness import isolated_env, start_daemon, stop_daemon
from PIL import Image

from conftest import REPO

SPOKEN = ["Where do penguins live?", "What colour is the sky?", "How tall is a giraffe?",
          "Why do cats purr?", "What is the capital of France?"]
TYPED = "what is two plus two"


@pytest.fixture
def daemon(tmp_path, models_dir: Path, pulse):
    env = isolated_env(tmp_path, models_dir, pulse)
    # Short answers keep the test quick; the spoken limit is what a user would hear anyway.
    # The history keeps all 55 turns of the test (it keeps the last 50 by default).
    d = start_daemon(env, config="assistant:\n  spoken_max_sentences: 1\n"
                                 "daemon:\n  history_size: 200\n")
    d.env = env
    yield d
    stop_daemon(d)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_typed_turns_during_spoken_ones_keep_each_to_its_own(daemon, pulse, make_speech,
                                                             tmp_path):
    picture = tmp_path / "dot.png"
    Image.new("RGB", (32, 32), "blue").save(picture)
    typed: list[dict] = []
    failures: list[str] = []

    def ask(n: int) -> None:
        args = {"text": TYPED, "speak": False}
        if n % 5 == 4:  # every fifth with a small picture attached
            args["attachments"] = [{"path": str(picture), "kind": "image"}]
        try:
            typed.append(daemon.call("ask", timeout=600, **args)["turn"])
        except Exception as exc:  # recorded, asserted below
            failures.append(f"{type(exc).__name__}: {exc}")

    asked = 0
    for question in SPOKEN:
        daemon.wait_for(lambda: daemon.call("status")["state"] == "listening", 120, "listening")
        player = pulse.play(make_speech([question]))
        # Ten typed questions while this one is heard, answered and spoken.
        threads = []
        for _ in range(10):
            t = threading.Thread(target=ask, args=(asked,), daemon=True)
            t.start()
            threads.append(t)
            asked += 1
            time.sleep(0.4)
        player.wait(30)
        for t in threads:
            t.join(600)
    assert not failures, failures
    assert len(typed) == 50
    # The typed turns can all be done while the last spoken answer is still being spoken: a
    # turn is in the history once it is done.
    daemon.wait_for(lambda: daemon.call("status")["state"] == "listening", 120, "listening")
    history = daemon.call("history", limit=1000)["turns"]
    spoken = [t for t in history if t["source"] == "voice"]
    # Every spoken question was heard as itself, never as the typed one.
    assert len(spoken) == len(SPOKEN), [t["transcript"] for t in spoken]
    for turn, question in zip(spoken, SPOKEN, strict=True):
        assert len(_words(turn["transcript"]) & _words(question)) >= 2, (turn, question)
        assert "plus" not in turn["transcript"].lower()
        assert turn["reply"].strip()
    for turn in typed:
        assert turn["transcript"] == TYPED or turn["source"] == "media", turn
        assert not turn.get("error"), turn
    # Every turn is in the history, once.
    ids = [t["id"] for t in history]
    assert len(ids) == len(set(ids)) == len(SPOKEN) + 50
    assert {t["id"] for t in typed} <= set(ids)
    daemon.wait_for(lambda: daemon.call("status")["state"] == "listening", 120, "listening")


def test_sarai_ask_uses_the_running_daemon_and_loads_no_model(daemon):
    proc = subprocess.Popen(
        [sys.executable, "-m", "sarai.daemon.cli", "ask", "--no-speak", "--json",
         "What is your name?"], cwd=REPO, env={**daemon.env, "XDG_RUNTIME_DIR":
                                                str(daemon.runtime)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "answered by the running SARAi" in err
    assert peak < 100, f"the asking process grew to {peak:.0f} MB"
    history = daemon.call("history", limit=10)["turns"]
    assert history[-1]["transcript"] == "What is your name?" and history[-1]["reply"]
