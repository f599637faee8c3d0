"""A model server that dies in the middle of an answer must not take the daemon with it.

Ollama itself cannot run here, so the server is a fake: a small HTTP process on loopback that
speaks enough of Ollama's API (/api/tags, streaming /api/chat) to be used by the real client,
streams an endless reply, and is killed with SIGKILL once the daemon is reading it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

from daemon_harness import start_daemon, stop_daemon

from sarai.daemon.control.wire import ControlError

FAKE_OLLAMA = r'''
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = {"name": "fake:latest", "model": "fake:latest", "modified_at": "2024-01-01T00:00:00Z",
         "size": 1000, "digest": "0" * 64,
         "details": {"format": "gguf", "family": "fake", "parameter_size": "1M",
                     "quantization_level": "Q4_0"}}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/api/tags"):
            self._json({"models": [MODEL]})
        elif self.path.startswith("/api/ps"):
            self._json({"models": []})
        elif self.path.startswith("/api/version"):
            self._json({"version": "0.0.0-fake"})
        else:
            self.send_error(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path.startswith("/api/chat"):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            n = 0
            while True:  # an answer that never ends: it is cut by killing this process
                part = {"model": "fake", "created_at": "2024-01-01T00:00:00Z",
                        "message": {"role": "assistant", "content": f"word{n}. "},
                        "done": False}
                data = (json.dumps(part) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                n += 1
                print("CHUNK", n, flush=True)
                time.sleep(0.2)
        elif self.path.startswith("/api/show"):
            self._json({"details": MODEL["details"], "model_info": {}})
        else:  # /api/generate (load or unload requests)
            self._json({"model": "fake", "done": True, "response": ""})

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("READY", flush=True)
server.serve_forever()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_fake(port: int) -> subprocess.Popen:
    fake = subprocess.Popen([sys.executable, "-c", FAKE_OLLAMA, str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert fake.stdout is not None and fake.stdout.readline().strip() == "READY"
    return fake


def test_killing_a_fake_ollama_mid_answer_leaves_the_daemon_serving(sarai_env, pulse):
    port = _free_port()
    fake = _start_fake(port)
    host = f"http://127.0.0.1:{port}"
    # Every tier the router may pick first is served by the fake; tiny (llama.cpp) remains.
    tier = f"    backend: ollama\n    model: fake\n    host: {host}\n    residency: on_demand\n"
    config = ("models:\n" + "".join(f"  {t}:\n{tier}"
                                    for t in ("omni_fast", "omni_quality", "expert")))
    d = start_daemon({**sarai_env, **pulse.env}, config=config)
    try:
        outcome: dict = {}

        def ask() -> None:
            try:
                outcome["turn"] = d.call("ask", text="Hello there!", timeout=120)["turn"]
            except ControlError as exc:
                outcome["error"] = str(exc)

        t = threading.Thread(target=ask, daemon=True)
        t.start()
        assert fake.stdout is not None
        for line in fake.stdout:  # the daemon is reading the streamed answer…
            if line.startswith("CHUNK 3"):
                break
        fake.send_signal(signal.SIGKILL)  # …when the server dies
        fake.wait(10)
        t.join(120)
        assert "turn" in outcome, outcome
        turn = outcome["turn"]
        # The turn is handed to the next tier that works, and the record says why.
        assert turn["tier"] == "tiny" and turn["reply"].strip(), turn
        assert "failed mid-reply" in turn["reason"] and "fake" in turn["reason"], turn
        assert d.proc.poll() is None, d.log

        st = d.call("status")
        assert st["state"] in ("listening", "hearing") and st["voice_loop"] == "running"
        # The next question falls back to a tier that still works.
        again = d.call("ask", text="Hello again!", speak=False, timeout=180)["turn"]
        assert again["reply"].strip() and again["tier"] == "tiny", again
        assert "fell back" in again["reason"] or "unavailable" in again["reason"], again
    finally:
        if fake.poll() is None:
            fake.kill()
        stop_daemon(d)
