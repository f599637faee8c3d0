"""The daemon's life under a service manager: READY / STATUS / WATCHDOG / STOPPING on a real
notify socket, journald-style logs, SIGTERM in the middle of an answer, a missing microphone."""

from __future__ import annotations

import re
import signal
import threading

from daemon_harness import start_daemon, stop_daemon

from sarai.daemon.control.wire import ControlError


def test_sigterm_mid_answer_exits_cleanly_and_unloads(sarai_env, pulse):
    env = {**sarai_env, **pulse.env, "WATCHDOG_USEC": "1000000"}
    d = start_daemon(env, journal=True)
    try:
        d.wait_for(lambda: d.notes.count("WATCHDOG=1") >= 3, 20, "watchdog pings")
        # Under the journal: a syslog priority, no timestamp of our own.
        lines = [x for x in d.stderr if x.startswith("<")]
        assert any(re.match(r"<6>sarai\.daemon\.control\.server: control socket listening", x)
                   for x in lines)
        assert not any(re.match(r"\d{4}-\d\d-\d\d", x) for x in d.stderr)

        outcome: dict = {}

        def ask() -> None:
            try:
                outcome["reply"] = d.call("ask", timeout=60,
                                          text="Tell me a long story about a dragon.")
            except ControlError as exc:
                outcome["error"] = str(exc)

        t = threading.Thread(target=ask, daemon=True)
        t.start()
        d.wait_for(lambda: "STATUS=thinking" in d.notes, 60, "the answer to start")
        code, took = d.terminate(signal.SIGTERM, timeout=30)
        assert code == 0, d.log
        assert took < 15, f"shutdown took {took:.1f} s:\n{d.log}"
        assert "STOPPING=1\nSTATUS=stopping" in d.notes
        assert "shutting down (SIGTERM)" in d.log and "models unloaded" in d.log
        assert not d.sock.exists()  # the socket is removed, not left stale
        t.join(10)
        assert outcome, "the client waiting for the answer was left hanging"
    finally:
        stop_daemon(d)


def test_sigint_and_quit_stop_the_daemon_too(sarai_env, pulse):
    d = start_daemon({**sarai_env, **pulse.env})
    try:
        assert d.call("quit")["stopping"] is True
        assert d.proc.wait(30) == 0
        assert "shutting down (quit requested over the control socket)" in d.log
        assert re.search(r"^\d{4}-\d\d-\d\d .* INFO sarai\.daemon\.service\.supervisor: ready",
                         d.log, re.M)
    finally:
        stop_daemon(d)
    d = start_daemon({**sarai_env, **pulse.env})
    try:
        code, _ = d.terminate(signal.SIGINT)
        assert code == 0 and "shutting down (SIGINT)" in d.log
    finally:
        stop_daemon(d)


def test_a_missing_microphone_is_an_error_state_not_a_crash(sarai_env, pulse):
    # The sound server's default microphone is one that is not there (unplugged). (A
    # configured name that matches no device at all is refused at start-up instead, with the
    # list of what exists: test_device_names.)
    config = "listen:\n  device_retry_s: 0.5\n"
    env = {**sarai_env, **pulse.env, "PULSE_SOURCE": "sarai_unplugged_microphone"}
    d = start_daemon(env, config=config)
    try:
        ready = next(n for n in d.notes if "READY=1" in n)
        assert "STATUS=error" in ready and "microphone" in ready
        st = d.call("status")
        assert st["state"] == "error" and "cannot open the microphone" in st["message"]
        assert st["voice_loop"] == "running"  # the loop keeps retrying the device itself
        turn = d.call("ask", text="Are you there?", speak=False)["turn"]
        assert turn["reply"].strip()  # typed questions still work
        assert d.call("mode", mode="wake")["mode"] == "wake"
        assert d.log.count("cannot open the microphone") < 5  # retries are not logged each time
        assert d.proc.poll() is None
    finally:
        stop_daemon(d)


def test_a_second_daemon_refuses_to_start(sarai_env, pulse, tmp_path):
    first = start_daemon({**sarai_env, **pulse.env})
    try:
        import subprocess
        import sys

        from conftest import REPO

        env = {**sarai_env, **pulse.env, "XDG_RUNTIME_DIR": str(first.runtime)}
        p = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "run"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 1
        assert "sarai: error: SARAi is already running" in p.stderr
        assert first.call("status")["pid"] == first.pid  # and the first one is untouched
    finally:
        stop_daemon(first)
