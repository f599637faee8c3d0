"""Nothing leaves the machine: a whole voice turn — Silero, Whisper, the model, Piper — makes
no DNS lookup and starts no connection beyond loopback, watched with strace.

onnxruntime (Piper runs on it) carries Microsoft's telemetry uploader in its Linux wheels:
at import it writes a device id and an event queue under ~/.cache/Microsoft, and about nine
seconds later starts resolving its upload host. `sarai.audio` switches it off before anything
imports onnxruntime. The process is therefore kept alive 15 s after the turn, and runs with a
desktop session's environment (no CI variables, which would switch the telemetry off by
themselves, and a fresh HOME).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import netwatch
import pytest

from conftest import REPO

HOLD_S = 15  # the uploader's first lookup comes ~9 s after onnxruntime is imported

# The real `sarai` entry point, then the process lives on as a daemon would.
HOLD = f"""
import sys, time
from sarai.daemon.cli.main import main
rc = main(sys.argv[1:])
time.sleep({HOLD_S})
sys.exit(rc)
"""


def _import(code: str, home: Path, base: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=netwatch.clean_env(base, home),
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_onnxruntime_writes_no_telemetry_once_sarai_audio_is_imported(tmp_path, sarai_env):
    ours, bare = tmp_path / "ours", tmp_path / "bare"
    ours.mkdir()
    bare.mkdir()
    r = _import("import sarai.audio, os, onnxruntime\n"
                "print(os.environ.get('ORT_DISABLE_TELEMETRY'), os.environ.get('HF_HUB_OFFLINE'))",
                ours, sarai_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1"]
    assert not (ours / ".cache").exists()
    # Without it, this onnxruntime does write its telemetry state (so the check above can
    # tell the difference).
    r = _import("import onnxruntime", bare, sarai_env)
    assert r.returncode == 0, r.stderr
    assert (bare / ".cache" / "Microsoft" / "DeveloperTools" / ".onnxruntime").is_dir()


def test_a_voice_turn_makes_no_lookup(tmp_path, sarai_env, make_speech):
    question = make_speech(["What time is it?"])
    home = tmp_path / "home"
    home.mkdir()
    env = netwatch.clean_env(sarai_env, home)
    try:
        w = netwatch.run([sys.executable, "-c", HOLD, "listen", "--input", str(question),
                          "--output", str(tmp_path / "answer.wav"), "--json"], env, cwd=REPO)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    assert w.returncode == 0, w.stderr[-2000:]
    turn = json.loads(w.stdout.splitlines()[-1])
    assert "time" in turn["transcript"].lower() and turn["reply"] and turn["error"] is None
    assert (tmp_path / "answer.wav").stat().st_size > 10_000  # Piper spoke the answer
    assert w.reaches == []
    assert w.cache_files == []


def test_the_watch_sees_onnxruntimes_lookup_when_nothing_stops_it(tmp_path, sarai_env):
    """The same watch on a bare `import onnxruntime`: it must see the lookup, or the test
    above would pass for nothing."""
    home = tmp_path / "home"
    home.mkdir()
    w = netwatch.run([sys.executable, "-c", f"import onnxruntime, time; time.sleep({HOLD_S})"],
                     netwatch.clean_env(sarai_env, home), cwd=REPO)
    assert w.returncode == 0, w.stderr
    assert w.reaches, "no lookup seen: has onnxruntime dropped its telemetry?"
    assert any("onnxruntime" in str(f) for f in w.cache_files)
