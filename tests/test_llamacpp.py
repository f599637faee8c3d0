"""Real llama-cpp-python inference on the starter GGUF files."""

import gc
import subprocess
import sys
import threading

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


def test_gemma_also_answers_in_its_own_format(gemma):
    # The starter Gemma GGUF carries no chat template: Gemma's is used, never Llama-2's.
    b = LlamaCppBackend(gemma, n_ctx=512, threads=2)
    try:
        assert b.template.source == "the known gemma template for gemma3"
        reply = "".join(b.stream(CHAT, max_tokens=16, temperature=0.0))
        assert reply.strip()
        assert not any(m in reply for m in ("[INST]", "<<SYS>>", "<</SYS>>"))
        # What was evaluated: <bos><start_of_turn>user\n + the system prompt folded into the
        # user's turn (Gemma has no system role).
        evaluated = b._llm.detokenize(b._llm._input_ids[:24].tolist(), special=True).decode()
        assert evaluated.startswith("<bos><start_of_turn>user\nYou are a helpful assistant.\n\n"
                                    "Say hello.<end_of_turn>")
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
    with pytest.raises(ModelError, match=r"cut\.gguf is truncated"):
        LlamaCppBackend(p, n_ctx=256)


def test_prompt_longer_than_the_context_is_a_model_error(smollm2):
    b = LlamaCppBackend(smollm2, n_ctx=128, threads=2)
    try:
        long = [Message("user", "tell me about the weather " * 60)]
        with pytest.raises(ModelError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf: .*context"):
            "".join(b.stream(long, max_tokens=4, temperature=0.0))
        assert not b.busy  # the failed reply let go of the model
    finally:
        b.close()


# --- one reply at a time per model --------------------------------------------------------

QUESTIONS = [
    [Message("system", "You are a helpful assistant."), Message("user", "Name three fruits.")],
    [Message("system", "You are a helpful assistant."), Message("user", "What is a river?")],
]


def test_two_threads_on_one_model_take_turns_and_get_what_each_gets_alone(smol):
    alone = ["".join(smol.stream(q, max_tokens=24, temperature=0.0)) for q in QUESTIONS]
    assert alone[0] != alone[1]
    seen: list[tuple[int, str]] = []  # (which, chunk) in the order they were produced
    out: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def ask(i: int) -> None:
        try:
            start.wait()
            parts = []
            for chunk in smol.stream(QUESTIONS[i], max_tokens=24, temperature=0.0):
                seen.append((i, chunk))
                parts.append(chunk)
            out[i] = "".join(parts)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and out == {0: alone[0], 1: alone[1]}
    # One reply ran to its end before the other began: no interleaving.
    order = [i for i, _ in seen]
    first = order[0]
    assert order == [first] * order.count(first) + [1 - first] * order.count(1 - first)


def _second_reply(backend, got: list[str], done: threading.Event,
                  cancel: CancelToken | None = None) -> threading.Thread:
    def run() -> None:
        got.append("".join(backend.stream(QUESTIONS[1], max_tokens=4, temperature=0.0,
                                          cancel=cancel)))
        done.set()

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("how", ["close", "drop"])
def test_a_reply_abandoned_half_way_lets_the_next_one_through(smol, how):
    first = smol.stream(QUESTIONS[0], max_tokens=64, temperature=0.0)
    assert next(first)  # started, and holding the model
    assert smol.busy
    got: list[str] = []
    done = threading.Event()
    t = _second_reply(smol, got, done)
    assert not done.wait(1.0)  # it waits for the model…
    if how == "close":
        first.close()
    else:
        del first  # …until the abandoned generator is collected
        gc.collect()
    t.join(timeout=120)
    assert done.is_set() and got[0].strip()
    assert not smol.busy


def test_cancel_releases_the_model_and_a_cancelled_wait_gives_up(smol):
    cancel = CancelToken()
    first = smol.stream(QUESTIONS[0], max_tokens=64, temperature=0.0, cancel=cancel)
    assert next(first)
    waiting_cancel = CancelToken()
    got: list[str] = []
    done = threading.Event()
    t = _second_reply(smol, got, done, cancel=waiting_cancel)
    assert not done.wait(1.0)
    waiting_cancel.cancel()  # the waiting reply is cancelled: it stops waiting, says nothing
    t.join(timeout=30)
    assert done.is_set() and got == [""]
    cancel.cancel()
    assert list(first) == []  # the cancelled reply ends at its next chunk…
    assert not smol.busy  # …and lets go of the model
    assert "".join(smol.stream(QUESTIONS[1], max_tokens=4, temperature=0.0)).strip()


def test_a_second_reply_in_the_same_thread_is_an_error_not_a_deadlock(smol):
    first = smol.stream(QUESTIONS[0], max_tokens=64, temperature=0.0)
    try:
        assert next(first)
        with pytest.raises(ModelError, match="unfinished reply in this thread"):
            next(smol.stream(QUESTIONS[1], max_tokens=4, temperature=0.0))
    finally:
        first.close()
    assert not smol.busy


_KEPT = """
import sys
from pathlib import Path
from sarai.models import memory
from sarai.models.backend import Message
from sarai.models.llamacpp import LlamaCppBackend

b = LlamaCppBackend(Path(sys.argv[1]), n_ctx=2048, threads=2, n_ubatch=int(sys.argv[2]))
memory.trim()
loaded = memory.sample().anon_mb
history = [Message("user" if i % 2 == 0 else "assistant",
                   f"Turn {i}: the weather was fine and the garden kept growing.")
           for i in range(99)]
list(b.stream(history, max_tokens=1, temperature=0.0))
assert b._llm.n_tokens > 1400
memory.trim()
print(memory.sample().anon_mb - loaded)
b.close()
"""


def _kept_by_a_long_conversation(path, n_ubatch):
    """RssAnon (MB) that a 1,400-token conversation leaves behind in a fresh context. Each
    is measured in a process of its own: in one that earlier tests used, the allocator may
    already hold freed memory that the conversation reuses, and then it shows as nothing."""
    r = subprocess.run([sys.executable, "-c", _KEPT, str(path), str(n_ubatch)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


def test_a_long_conversation_leaves_little_memory_behind(smollm2):
    # llama.cpp's attention scores for one micro-batch against the whole context become
    # resident as a conversation grows and stay so: 512 tokens at once kept ~65 MB here.
    from sarai.models.settings import TierSettings

    small = TierSettings(model="x").n_ubatch
    big = _kept_by_a_long_conversation(smollm2, 512)
    mine = _kept_by_a_long_conversation(smollm2, small)
    print(f"kept {big:.0f} MB with 512-token micro-batches, {mine:.0f} MB with {small}")
    assert mine < 0.5 * big
