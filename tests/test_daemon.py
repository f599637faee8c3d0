"""The real daemon (`sarai run`) on the PulseAudio test devices, driven through its socket and
the `sarai` commands: states, modes, residency, typed and spoken turns, the turn log."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from daemon_harness import RunningDaemon, isolated_env, start_daemon, stop_daemon

from conftest import REPO
from sarai.daemon.control.wire import ControlError


@pytest.fixture(scope="module")
def env(tmp_path_factory, models_dir: Path, pulse) -> dict[str, str]:
    home = tmp_path_factory.mktemp("daemon")
    return isolated_env(home, models_dir, pulse)


@pytest.fixture(scope="module")
def daemon(env):
    d = start_daemon(env)
    yield d
    stop_daemon(d)


class Events:
    """Follows `subscribe` on a thread; wait_for(pred) returns the first matching event."""

    def __init__(self, d: RunningDaemon) -> None:
        self.items: list[dict] = []
        self._client = d.client()
        self._cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()
        self.wait_for(lambda e: e["event"] == "mode")  # the greeting has arrived

    def _run(self) -> None:
        for ev in self._client.subscribe():
            with self._cond:
                self.items.append(ev)
                self._cond.notify_all()

    def wait_for(self, pred, timeout: float = 60, start: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.items[start:]:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event in {self.items[start:]}")
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.items)

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def events(daemon):
    ev = Events(daemon)
    yield ev
    ev.close()


def sarai(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sarai.daemon.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def daemon_env(env, d: RunningDaemon) -> dict[str, str]:
    return {**env, "XDG_RUNTIME_DIR": str(d.runtime)}


def test_ready_once_listening_and_status_tells_state_and_residency(daemon, env):
    ready = next(n for n in daemon.notes if "READY=1" in n)
    assert "STATUS=listening" in ready
    log = daemon.log
    assert log.index("control socket listening") < log.index("ready (pid")
    st = daemon.call("status")
    assert st["state"] == "listening" and st["mode"] == "always"
    assert st["pid"] == daemon.pid and st["voice_loop"] == "running"
    fast = next(m for m in st["models"] if m["tier"] == "omni_fast")
    assert fast["resident"] and fast["pinned"]  # pinned in the default config: preloaded
    r = sarai(daemon_env(env, daemon), "status")
    assert r.returncode == 0, r.stderr
    assert "state:      listening" in r.stdout and "omni_fast" in r.stdout
    assert "resident, pinned" in r.stdout
    r = sarai(daemon_env(env, daemon), "status", "--json")
    assert json.loads(r.stdout)["pid"] == daemon.pid


def test_mute_unmute_and_modes_are_announced(daemon, events, env):
    start = events.mark()
    assert daemon.call("mode", mode="wake")["mode"] == "wake"
    events.wait_for(lambda e: e == {**e, "event": "mode", "mode": "wake"}, start=start)
    daemon.call("mute")
    events.wait_for(lambda e: e["event"] == "state" and e["state"] == "muted", start=start)
    assert daemon.call("status")["state"] == "muted"
    assert any(n == "STATUS=muted" for n in daemon.notes)  # systemd sees the state too
    r = sarai(daemon_env(env, daemon), "unmute")
    assert r.returncode == 0 and r.stdout.strip() == "mode: wake"  # back to the mode before
    events.wait_for(lambda e: e["event"] == "state" and e["state"] == "listening", start=start)
    with pytest.raises(ControlError, match="push-to-talk works in push mode"):
        daemon.call("push", action="start")
    assert sarai(daemon_env(env, daemon), "mode", "push").stdout.strip() == "mode: push"
    r = sarai(daemon_env(env, daemon), "push", "start")
    assert r.returncode == 0 and "talking" in r.stdout
    assert daemon.call("push", action="stop")["pushing"] is False
    daemon.call("mode", mode="always")
    r = sarai(daemon_env(env, daemon), "mode", "loud")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_models_load_unload_and_pin_with_residency_events(daemon, events):
    start = events.mark()

    def resident(view, tier):
        return next(m for m in view["models"] if m["tier"] == tier)["resident"]

    view = daemon.call("models", action="load", tier="omni_quality")
    assert resident(view, "omni_quality")
    ev = events.wait_for(lambda e: e["event"] == "residency" and resident(e, "omni_quality"),
                         start=start)
    assert 100 < ev["ram"]["used_mb"] < ev["ram"]["budget_mb"]
    # process_mb is the whole daemon as the kernel counts it (the charges are estimates)
    rss_mb = _rss_mb(daemon.pid)
    assert 0.8 * rss_mb < ev["ram"]["process_mb"] < 1.25 * rss_mb
    events.wait_for(lambda e: e["event"] == "state" and e["state"] == "loading", start=start)
    view = daemon.call("models", action="unload", tier="omni_quality")
    assert not resident(view, "omni_quality")
    events.wait_for(lambda e: e["event"] == "residency" and not resident(e, "omni_quality"),
                    start=start)
    with pytest.raises(ControlError, match="is pinned; unpin it first"):
        daemon.call("models", action="unload", tier="omni_fast")
    # tiny runs on the same starter file as omni_fast, so it cannot go either.
    with pytest.raises(ControlError, match="omni_fast, tiny.* is pinned"):
        daemon.call("models", action="unload", tier="tiny")
    view = daemon.call("models", action="pin", tier="omni_quality")
    q = next(m for m in view["models"] if m["tier"] == "omni_quality")
    assert q["resident"] and q["pinned"]
    daemon.call("models", action="unpin", tier="omni_quality")
    view = daemon.call("models", action="unload", tier="omni_quality")
    assert not resident(view, "omni_quality")
    ps = daemon.call("models")
    assert [m["tier"] for m in ps["models"]] == ["omni_fast", "omni_quality", "expert", "tiny"]
    (fast,) = [r for r in ps["resident"] if "omni_fast" in r["tiers"]]
    assert fast["pinned"] and fast["state"] == "resident" and fast["charged_mb"] > 0


def test_sarai_models_acts_on_the_running_daemon(daemon, env):
    denv = daemon_env(env, daemon)
    r = sarai(denv, "models", "ps")
    assert r.returncode == 0, r.stderr
    assert f"(Resident in the running SARAi, pid {daemon.pid}.)" in r.stdout
    assert "omni_fast" in r.stdout and "pinned" in r.stdout
    r = sarai(denv, "models", "load", "omni_quality")
    assert r.returncode == 0 and "Loaded omni_quality in the running SARAi" in r.stdout, r.stderr
    assert next(m for m in daemon.call("models")["models"]
                if m["tier"] == "omni_quality")["resident"]
    r = sarai(denv, "models", "ps", "--json")
    payload = json.loads(r.stdout)
    assert payload["daemon_pid"] == daemon.pid
    assert any("omni_quality" in x["tiers"] for x in payload["resident"])
    r = sarai(denv, "models", "unload", "omni_quality")
    assert r.returncode == 0, r.stderr
    assert not next(m for m in daemon.call("models")["models"]
                    if m["tier"] == "omni_quality")["resident"]
    r = sarai(denv, "models", "unload", "omni_fast")
    assert r.returncode == 1 and "is pinned; unpin it first" in r.stderr


def test_ask_is_answered_aloud_and_logged_without_audio(daemon, events, env):
    start = events.mark()
    reply = daemon.call("ask", text="Say hello to me in a few words.")
    turn = reply["turn"]
    assert turn["reply"].strip() and turn["source"] == "text" and turn["error"] is None
    assert "first_audio" in turn["timings"]  # it was spoken on the speaker device
    ev = events.wait_for(lambda e: e["event"] == "turn", start=start)
    assert ev["reply"] == turn["reply"]
    events.wait_for(lambda e: e["event"] == "state" and e["state"] == "thinking", start=start)
    logged = [json.loads(x) for x in (daemon.state_dir / "turns.jsonl").read_text().splitlines()]
    assert logged[-1]["transcript"] == "Say hello to me in a few words."
    assert logged[-1]["reply"] == turn["reply"]
    stored = [p for p in daemon.state_dir.rglob("*") if p.is_file()]
    assert {"daemon.log", "turns.jsonl"} <= {p.name for p in stored}
    audio = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".raw", ".pcm"}
    assert not [p for p in stored if p.suffix in audio]  # no audio is kept
    assert not any(b"RIFF" in p.read_bytes()[:64] for p in stored)
    quiet = daemon.call("ask", text="And what is your name?", speak=False)["turn"]
    assert quiet["reply"].strip() and "first_audio" not in quiet["timings"]
    r = sarai(daemon_env(env, daemon), "history", "-n", "2", "--json")
    assert [json.loads(x)["transcript"] for x in r.stdout.splitlines()] == [
        "Say hello to me in a few words.", "And what is your name?"]
    with pytest.raises(ControlError, match="attachment not found"):
        daemon.call("ask", text="what is this?", attachments=[{"path": "/nope.png"}])


def test_forget_clears_the_history(daemon, env):
    daemon.call("ask", text="Remember the word banana.", speak=False)
    assert daemon.call("history")["turns"]
    r = sarai(daemon_env(env, daemon), "forget")
    assert r.returncode == 0 and r.stdout.strip() == "forgotten"
    assert daemon.call("history")["turns"] == []
    assert sarai(daemon_env(env, daemon), "history").stdout.strip() == "no turns yet"


def test_a_spoken_question_in_the_room_becomes_a_turn(daemon, events, pulse, make_speech):
    start = events.mark()
    pulse.play(make_speech(["Hello there, what is your name?"])).wait(30)
    events.wait_for(lambda e: e["event"] == "state" and e["state"] == "hearing", start=start)
    turn = events.wait_for(lambda e: e["event"] == "turn" and e["source"] == "voice",
                           timeout=120, start=start)
    assert "name" in turn["transcript"].lower() and turn["reply"].strip()
    history = daemon.call("history")["turns"]
    assert (turn["transcript"], turn["reply"]) in [(t["transcript"], t["reply"]) for t in history]


def test_bad_input_on_the_daemon_socket_leaves_it_serving(daemon):
    with daemon.client() as c:
        c.send_line(b"{broken\n")
        assert c.read_reply()["code"] == "bad_json"
        c.send_line(b'{"cmd": "reboot"}\n')
        assert c.read_reply()["code"] == "unknown_command"
        c.send_line(b'{"cmd": "status", "x": "' + b"y" * 70_000 + b'"}\n')
        assert c.read_reply()["code"] == "too_long"  # the default cap is 64 KiB
        assert c.call("status")["state"] in ("listening", "hearing", "thinking", "speaking")


def test_commands_without_a_daemon_say_so_plainly(env, tmp_path):
    r = sarai({**env, "XDG_RUNTIME_DIR": str(tmp_path)}, "mute")
    assert r.returncode == 1
    assert r.stderr.startswith("sarai: error: SARAi is not running")
    assert "Traceback" not in r.stderr
