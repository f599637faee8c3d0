"""Real llama-cpp-python inference on the starter GGUF files."""

import pytest

from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError
from sarai.models.llamacpp import LlamaCppBackend, check_gguf

CHAT = [Message("system", "You are a helpful assistant."), Message("user", "Say hello.")]


@pytest.fixture(scope="module")
def smol(smollm2):
    backend = LlamaCppBackend(smollm2, n_ctx=512, threads=2)
    yield backend
    backend.close()


def test_streams_a_real_reply(smol):
    chunks = list(smol.stream(CHAT, max_tokens=24, temperature=0.0))
    assert len(chunks) > 1
    assert any(ch.isalpha() for ch in "".join(chunks))


def test_cancel_stops_mid_reply(smol):
    cancel = CancelToken()
    got = []
    for chunk in smol.stream([Message("user", "Count from one to one hundred.")],
                             max_tokens=200, temperature=0.0, cancel=cancel):
        got.append(chunk)
        if len(got) == 3:
            cancel.cancel()
    assert len(got) == 3


def test_gemma_also_answers(gemma):
    b = LlamaCppBackend(gemma, n_ctx=512, threads=2)
    try:
        assert "".join(b.stream(CHAT, max_tokens=16, temperature=0.0)).strip()
    finally:
        b.close()


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        LlamaCppBackend(tmp_path / "absent.gguf")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "fake.gguf"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 4096)
    with pytest.raises(ModelError, match="not a GGUF model file"):
        check_gguf(p)


def test_truncated_gguf_is_refused_cleanly(tmp_path, smollm2):
    p = tmp_path / "cut.gguf"
    p.write_bytes(smollm2.read_bytes()[:200_000])
    with pytest.raises(ModelError, match="cannot load cut.gguf"):
        LlamaCppBackend(p, n_ctx=256)
