"""`sarai quit` against a daemon that has already exited but is still an unreaped child of
the process that started it (a zombie), as when it was started from the same shell. The
daemon here is a small stand-in serving the real ControlServer: what is tested is how
`sarai quit` waits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

STAND_IN = """
import os, sys, threading, time
from pathlib import Path
from sarai.daemon.control.hub import EventHub
from sarai.daemon.control.server import ControlServer

stop = threading.Event()
def handle(req):
    if req.cmd == "quit":
        stop.set()
        return {"stopping": True, "pid": os.getpid()}
    return {"state": "listening"}

server = ControlServer(Path(sys.argv[1]), handle, EventHub(), list)
server.start()
print("ready", flush=True)
stop.wait(60)
time.sleep(0.3)  # the reply goes out; then exit without removing anything (os._exit)
os._exit(0)
"""


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_quit_sees_a_zombie_daemon_as_stopped(tmp_path, sarai, sarai_env):
    runtime = tmp_path / "run"
    runtime.mkdir()
    sock = runtime / "sarai" / "control.sock"
    daemon = subprocess.Popen([sys.executable, "-c", STAND_IN, str(sock)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout.readline().strip() == "ready"
        r = sarai("quit", env={**sarai_env, "XDG_RUNTIME_DIR": str(runtime)})
        # This test process never reaped it, so the stand-in is a zombie now; the old wait
        # took it for a live process, ran its full 30 s and said "still stopping".
        assert _state(daemon.pid) == "Z"
        assert (r.code, r.out.strip(), r.err) == (0, "SARAi stopped", "")
    finally:
        daemon.kill()
        daemon.wait()
