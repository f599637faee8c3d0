"""The `openai` backend against a real OpenAI-compatible server on loopback:
`python -m llama_cpp.server` (llama-cpp-python[server]) serving the SmolLM2 starter GGUF."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelUnavailable
from sarai.models.registry import ModelRegistry
from sarai.models.settings import ModelsSettings, ResidencySettings, Tier, TierSettings

CHAT = [Message("system", "You are a helpful assistant."),
        Message("user", "Count from one to twenty.")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(smollm2: Path, tmp_path_factory):
    port = _free_port()
    # a file, not a pipe: the server logs more at start than a pipe buffer holds
    log = (tmp_path_factory.mktemp("openai") / "server.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2), "--model_alias",
         "smollm2", "--n_ctx", "512", "--n_threads", "2", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                pytest.fail("llama_cpp.server did not start within 180 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _registry(tmp: Path, smollm2: Path, expert: TierSettings) -> ModelRegistry:
    local = TierSettings(model=str(smollm2), starter=None, n_ctx=256, threads=2)
    return ModelRegistry(ModelsSettings(omni_fast=local, omni_quality=local, tiny=local,
                                        expert=expert), tmp,
                         residency=ResidencySettings(budget_gb=2))


def test_streams_a_real_reply_through_the_server(tmp_path, smollm2, server):
    reg = _registry(tmp_path, smollm2, TierSettings(backend="openai", host=server,
                                                    model="smollm2", starter=None))
    try:
        r = reg.resolve(Tier.EXPERT)
        assert (r.backend, r.model, r.starter) == ("openai", "smollm2", False)
        chunks = list(reg.backend(Tier.EXPERT).stream(CHAT, max_tokens=24, temperature=0.0))
        assert len(chunks) > 1
        assert any(c.isalnum() for c in "".join(chunks))
        info = next(i for i in reg.resident(include_ollama=False) if Tier.EXPERT in i.tiers)
        # the server holds the model: SARAi charges none of it to its own budget
        assert info.external and info.charged_mb == 0 and info.state == "resident"
    finally:
        reg.close()


def test_cancel_stops_the_reply_and_the_server_keeps_serving(tmp_path, smollm2, server):
    reg = _registry(tmp_path, smollm2, TierSettings(backend="openai", host=server + "/v1",
                                                    model="smollm2", starter=None))
    try:
        cancel = CancelToken()
        got = []
        for chunk in reg.backend(Tier.EXPERT).stream(CHAT, max_tokens=200, temperature=0.0,
                                                     cancel=cancel):
            got.append(chunk)
            if len(got) == 3:
                cancel.cancel()
        assert len(got) == 3
        again = "".join(reg.backend(Tier.EXPERT).stream(CHAT, max_tokens=8, temperature=0.0))
        assert again.strip()
    finally:
        reg.close()


def test_model_the_server_does_not_offer_falls_back_to_the_starter(tmp_path, smollm2, server):
    reg = _registry(tmp_path, smollm2, TierSettings(backend="openai", host=server,
                                                    model="llama-70b", starter="smollm2-135m"))
    try:
        r = reg.resolve(Tier.EXPERT)
        assert r.starter and r.backend == "llamacpp"
        assert "does not offer 'llama-70b'" in r.why and "smollm2" in r.why
    finally:
        reg.close()


def test_unreachable_server_is_a_clear_refusal_and_other_tiers_serve(tmp_path, smollm2):
    port = _free_port()  # nothing listens there
    reg = _registry(tmp_path, smollm2, TierSettings(backend="openai",
                                                    host=f"http://127.0.0.1:{port}",
                                                    model="smollm2", starter=None))
    try:
        with pytest.raises(ModelUnavailable, match="not reachable"):
            reg.backend(Tier.EXPERT)
        assert "".join(reg.backend(Tier.TINY).stream(CHAT, max_tokens=6, temperature=0.0))
    finally:
        reg.close()
