"""Faults on the real daemon: the sound server dies mid-answer, the disk fills up under the
turn log. The daemon keeps going, records what happened as it happened, and says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from daemon_harness import isolated_env, start_daemon, stop_daemon
from private_pulse import PrivatePulse

STORY = "Tell me a very long story about a dragon who lived in the mountains."


def test_sound_server_killed_mid_answer_records_the_answer_as_interrupted(tmp_path,
                                                                           models_dir):
    server = PrivatePulse(Path(tempfile.mkdtemp(prefix="sarai-pa-")) / "native")
    server.start()
    env = isolated_env(tmp_path, models_dir, server)
    d = start_daemon(env, config="listen:\n  device_retry_s: 0.5\n"
                                 "models:\n  omni_fast:\n    max_tokens: 400\n")
    try:
        d.wait_for(lambda: d.call("status")["state"] == "listening", 60, "listening")
        answers: list[dict] = []
        asker = threading.Thread(target=lambda: answers.append(
            d.call("ask", timeout=300, text=STORY)["turn"]), daemon=True)
        asker.start()
        d.wait_for(lambda: d.call("status")["state"] == "speaking", 240, "speaking")
        server.kill()
        asker.join(120)
        assert len(answers) == 1, d.log
        (turn,) = answers
        assert turn["interrupted"] is True and turn["outcome"] == "interrupted", turn
        assert "speaker went away" in turn["error"]
        assert turn["reply"]  # what was written is kept
        history = d.call("history", limit=10)["turns"]
        assert history[-1]["id"] == turn["id"] and history[-1]["interrupted"] is True
        server.start()
        d.wait_for(lambda: d.call("status")["state"] == "listening", 60, "listening again")
        again = d.call("ask", timeout=300, text="What is your name?", speak=False)["turn"]
        assert again["reply"] and not again["interrupted"]
    finally:
        stop_daemon(d)
        server.kill()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs for the daemon's state (its log and turn log), filled on demand."""
    state = tmp_path / "state"
    state.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)],
                       check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"cannot mount a small disk for the test: {exc}")
    yield state
    subprocess.run(["umount", "-l", str(state)], capture_output=True)


def test_a_full_disk_under_the_turn_log_still_answers_and_says_why(tmp_path, models_dir,
                                                                   pulse, small_disk):
    env = isolated_env(tmp_path, models_dir, pulse)
    assert env["XDG_STATE_HOME"] == str(small_disk)
    d = start_daemon(env)
    filler = small_disk / "filler"
    try:
        first = d.call("ask", timeout=300, text="What is your name?", speak=False)["turn"]
        assert first["reply"]
        log = small_disk / "sarai" / "turns.jsonl"
        assert first["transcript"] in log.read_text()
        # A fresh log on a full disk (the old one's last page might still have room).
        log.unlink()
        _fill(filler)
        second = d.call("ask", timeout=300, text="Where do penguins live?", speak=False)["turn"]
        assert second["reply"]  # answered all the same
        assert not log.exists() or "Where do penguins live?" not in log.read_text()
        d.wait_for(lambda: "cannot write the turn log" in d.log
                   and "No space left on device" in d.log, 30, "the reason in the log")
        assert "Where do penguins live?" in [t["transcript"]
                                            for t in d.call("history", limit=5)["turns"]]
        # Room again: the next turn is logged as usual.
        filler.unlink()
        third = d.call("ask", timeout=300, text="What colour is the sky?", speak=False)["turn"]
        assert third["reply"] and "What colour is the sky?" in log.read_text()
        assert d.call("status")["state"] in ("listening", "idle")
    finally:
        stop_daemon(d)
        shutil.rmtree(filler, ignore_errors=True)


def _fill(path: Path) -> None:
    """Write to `path` until the disk holding it has not one byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)


def test_a_model_file_deleted_between_turns_hands_the_turn_on_and_says_why(tmp_path,
                                                                          models_dir, pulse,
                                                                          smollm2):
    gguf = tmp_path / "fast.gguf"
    shutil.copy(smollm2, gguf)
    env = isolated_env(tmp_path, models_dir, pulse)
    d = start_daemon(env, config=f"models:\n  omni_fast:\n    model: {gguf}\n")
    try:
        first = d.call("ask", timeout=300, text="Hello, how are you?", speak=False)["turn"]
        assert first["tier"] == "omni_fast" and first["reply"]
        d.call("models", action="unload", tier="omni_fast", force=True)
        gguf.unlink()
        second = d.call("ask", timeout=300, text="Hello again, how are you?",
                        speak=False)["turn"]
        # Another tier answered, and the record says why the first choice did not.
        assert second["reply"] and second["error"] is None
        assert second["tier"] not in ("", "omni_fast"), second
        assert "omni_fast" in second["reason"], second["reason"]
        d.wait_for(lambda: "fast.gguf" in d.log and "not found" in d.log, 30,
                   "the missing file named in the log")
        assert d.call("status")["state"] in ("listening", "idle")
    finally:
        stop_daemon(d)
