"""The next prompt is read into the model before the user speaks again: the remembered
conversation, one message at a time (so a new turn can stop it), as memory will be once the
current turn is remembered. Real llama.cpp inference on the starter model."""

from __future__ import annotations

import pytest

from conftest import StreamSpy
from sarai.daemon.app import Context, build_assistant
from sarai.daemon.config import load_config
from sarai.daemon.conversation.record import TurnRecord
from sarai.daemon.paths import Paths
from sarai.models.backend import CancelToken
from sarai.models.settings import Tier


@pytest.fixture
def assistant(models_dir, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("")
    a = build_assistant(Context(load_config(cfg), Paths.from_env()), hear=False, speak=False)
    a.registry.preload_pinned()
    yield a
    a.registry.close()


def _said(memory) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in memory.messages()]


def test_prime_reads_memory_as_it_will_be_after_the_turn(assistant, monkeypatch):
    assistant.text_turn("What is your name?", None)
    assistant.text_turn("Where do you live?", None)
    spy = StreamSpy(assistant.registry)
    monkeypatch.setattr(assistant.registry, "backend", spy.backend)
    pending = TurnRecord(transcript="And what do you like?", reply="I like music.",
                         tier=Tier.OMNI_FAST.value, language="en")

    assistant.prime(Tier.OMNI_FAST, "en", after=pending)

    prompts = [messages for messages, _ in spy.calls]
    assert all(max_tokens == 1 for _, max_tokens in spy.calls)
    # One step per remembered exchange, then the whole prompt; each a prefix of the next.
    exchanges = len(assistant.memory.messages_after(pending.transcript, pending.reply)) // 2
    assert exchanges == 3 and len(prompts) == exchanges + 1
    for shorter, longer in zip(prompts, prompts[1:], strict=False):
        assert longer[: len(shorter)] == shorter
    final = prompts[-1]
    assert final[0][0] == "system" and final[-1] == ("user", "")
    assert ("assistant", "I like music.") in final
    assistant.remember(pending)
    assert final[1:-1] == _said(assistant.memory)  # exactly what the next turn will send


def test_a_new_turn_stops_priming_between_messages(assistant, monkeypatch):
    for q in ("What is your name?", "Where do you live?", "Do you like tea?"):
        assistant.text_turn(q, None)
    cancel = CancelToken()
    spy = StreamSpy(assistant.registry, on_call=cancel.cancel)
    monkeypatch.setattr(assistant.registry, "backend", spy.backend)
    assistant.prime(Tier.OMNI_FAST, "en", cancel=cancel)
    assert len(spy.calls) == 1
