"""The `ollama` backend against a FAKE Ollama server on loopback.

No Ollama server can be installed here, so `FakeOllama` implements the parts of its HTTP API
SARAi uses, as Ollama documents them: /api/tags, /api/ps, /api/generate (an empty prompt loads
a model, keep_alive=0 unloads it) and /api/chat streaming NDJSON, with keep_alive setting how
long a model stays loaded. The official `ollama` client talks to it unchanged.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelUnavailable
from sarai.models.registry import ModelRegistry
from sarai.models.settings import ModelsSettings, ResidencySettings, Tier, TierSettings

CHAT = [Message("system", "You are terse."), Message("user", "Count to ten.")]
REPLY = "One, two, three, four, five, six, seven, eight, nine, ten. That is ten."
FOREVER = datetime(2318, 1, 1, tzinfo=UTC)  # what Ollama reports for keep_alive < 0


def _duration(value) -> float | None:
    """Seconds for an Ollama keep_alive ("30s", "5m", 60, -1); None means forever."""
    if value is None:
        return 300.0
    if isinstance(value, int | float):
        return None if value < 0 else float(value)
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", str(value))
    if not m:
        raise ValueError(value)
    n = float(m.group(1))
    return None if n < 0 else n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class FakeOllama:
    """A fake Ollama: models it 'has', what is loaded until when, every keep_alive it got."""

    def __init__(self, models: dict[str, int]) -> None:
        self.models = models  # name -> size in bytes
        self.loaded: dict[str, datetime] = {}
        self.keep_alive: list[tuple[str, object]] = []
        self.client_gone = threading.Event()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/tags":
                    self._json(200, {"models": [fake.tag(n) for n in fake.models]})
                elif self.path == "/api/ps":
                    fake.expire()
                    with fake.lock:
                        loaded = dict(fake.loaded)
                    self._json(200, {"models": [
                        {**fake.tag(n), "expires_at": exp.isoformat(), "size_vram": 0}
                        for n, exp in loaded.items()]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                name = body.get("model", "")
                if name not in fake.models:
                    self._json(404, {"error": f"model '{name}' not found"})
                    return
                if self.path == "/api/generate":
                    unload = fake.keep(name, body.get("keep_alive"))
                    self._json(200, {"model": name, "created_at": fake.now(), "response": "",
                                     "done": True, "done_reason": "unload" if unload else "load"})
                elif self.path == "/api/chat":
                    fake.keep(name, body.get("keep_alive"))
                    self.chat(name, int(body.get("options", {}).get("num_predict", 128)))
                else:
                    self._json(404, {"error": "not found"})

            def chat(self, name: str, limit: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = REPLY.split(" ")[:limit]
                try:
                    for i, word in enumerate(words):
                        self.chunk({"model": name, "created_at": fake.now(), "done": False,
                                    "message": {"role": "assistant",
                                                "content": word + (" " if i < len(words) - 1
                                                                   else "")}})
                        time.sleep(0.05)
                    self.chunk({"model": name, "created_at": fake.now(), "done": True,
                                "done_reason": "stop", "message": {"role": "assistant",
                                                                   "content": ""}})
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    fake.client_gone.set()  # Ollama stops generating when the client leaves

            def chunk(self, obj: dict) -> None:
                data = json.dumps(obj).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def now() -> str:
        return datetime.now(UTC).isoformat()

    def tag(self, name: str) -> dict:
        return {"name": name, "model": name, "modified_at": self.now(), "size": self.models[name],
                "digest": "0" * 64, "details": {"format": "gguf", "family": "llama",
                                                "families": ["llama"], "parameter_size": "10.7B",
                                                "quantization_level": "Q4_0"}}

    def keep(self, name: str, keep_alive) -> bool:
        """Apply keep_alive as Ollama does; True when it unloaded the model."""
        self.keep_alive.append((name, keep_alive))
        seconds = _duration(keep_alive)
        with self.lock:
            if seconds == 0:
                self.loaded.pop(name, None)
                return True
            self.loaded[name] = (FOREVER if seconds is None
                                 else datetime.now(UTC) + timedelta(seconds=seconds))
        return False

    def expire(self) -> None:
        with self.lock:
            now = datetime.now(UTC)
            self.loaded = {n: t for n, t in self.loaded.items() if t > now}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeOllama({"solar:10.7b": 200 * 2**20, "llama3:8b": 300 * 2**20})
    yield server
    server.close()


def _registry(tmp: Path, smollm2: Path, expert: TierSettings,
              budget_gb: float = 2.0) -> ModelRegistry:
    local = TierSettings(model=str(smollm2), starter=None, n_ctx=256, threads=2)
    return ModelRegistry(ModelsSettings(omni_fast=local, omni_quality=local, tiny=local,
                                        expert=expert), tmp,
                         residency=ResidencySettings(budget_gb=budget_gb))


def _ollama(url: str, **kw) -> TierSettings:
    return TierSettings(**{"backend": "ollama", "model": "solar:10.7b", "host": url,
                           "starter": None, **kw})


def test_fake_ollama_streams_and_ttl_maps_to_keep_alive(tmp_path, smollm2, fake):
    reg = _registry(tmp_path, smollm2, _ollama(fake.url, residency="ttl", ttl_s=30))
    try:
        reply = "".join(reg.backend(Tier.EXPERT).stream(CHAT, max_tokens=50, temperature=0.0))
        assert reply == REPLY
        assert fake.keep_alive == [("solar:10.7b", "30s")] * 2  # load, then the chat
        info = next(i for i in reg.resident() if Tier.EXPERT in i.tiers)
        assert info.external and info.policy == "ttl"
        assert "Ollama holds 200 MB" in info.detail
        assert info.expires_in_s is not None and 25 < info.expires_in_s <= 30
        # a local server's model counts against the budget at its size on disk
        assert info.charged_mb == pytest.approx(200, abs=1)
        assert reg.unload(Tier.EXPERT)
        assert fake.keep_alive[-1] == ("solar:10.7b", 0)
        assert fake.loaded == {}
        assert reg.resident() == []
    finally:
        reg.close()


def test_fake_ollama_pinned_is_kept_loaded_and_others_models_show_in_ps(tmp_path, smollm2,
                                                                         fake):
    reg = _registry(tmp_path, smollm2, _ollama(fake.url, residency="pinned"))
    try:
        reg.preload_pinned()
        assert fake.keep_alive == [("solar:10.7b", -1)]
        fake.keep("llama3:8b", "5m")  # loaded by another Ollama client
        infos = {i.name: i for i in reg.resident()}
        mine, theirs = infos["solar:10.7b"], infos["llama3:8b"]
        assert mine.pinned and mine.expires_in_s is None and "kept loaded" in mine.detail
        assert theirs.external and theirs.charged_mb == 0 and theirs.tiers == ()
        assert "not by SARAi" in theirs.detail and 250 < theirs.expires_in_s <= 300
    finally:
        reg.close()
    assert "solar:10.7b" not in fake.loaded  # closing unloads (keep_alive=0)


def test_fake_ollama_cancel_closes_the_stream(tmp_path, smollm2, fake):
    reg = _registry(tmp_path, smollm2, _ollama(fake.url))
    try:
        cancel = CancelToken()
        got = []
        for chunk in reg.backend(Tier.EXPERT).stream(CHAT, max_tokens=50, temperature=0.0,
                                                     cancel=cancel):
            got.append(chunk)
            if len(got) == 3:
                cancel.cancel()
        assert len(got) == 3
        assert fake.client_gone.wait(5)
    finally:
        reg.close()


def test_unreachable_ollama_host_falls_back_or_refuses_clearly(tmp_path, smollm2):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends
    reg = _registry(tmp_path, smollm2, _ollama(dead, starter="smollm2-135m"))
    try:
        r = reg.resolve(Tier.EXPERT)
        assert r.starter and f"Ollama at {dead} is not reachable" in r.why
    finally:
        reg.close()
    reg = _registry(tmp_path, smollm2, _ollama(dead))
    try:
        with pytest.raises(ModelUnavailable, match="not reachable"):
            reg.backend(Tier.EXPERT)
        assert "".join(reg.backend(Tier.TINY).stream(CHAT, max_tokens=6, temperature=0.0))
    finally:
        reg.close()


def test_fake_ollama_missing_model_and_model_over_budget(tmp_path, smollm2, fake):
    reg = _registry(tmp_path, smollm2, _ollama(fake.url, model="mixtral:8x7b"))
    try:
        with pytest.raises(ModelUnavailable, match="has no model 'mixtral:8x7b'"):
            reg.backend(Tier.EXPERT)
    finally:
        reg.close()
    reg = _registry(tmp_path, smollm2, _ollama(fake.url), budget_gb=0.1)
    try:
        with pytest.raises(ModelUnavailable, match="more than the whole RAM budget"):
            reg.backend(Tier.EXPERT)
        assert fake.loaded == {}  # refused before asking Ollama to load it
    finally:
        reg.close()
