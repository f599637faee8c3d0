"""The next prompt is read into the model before the user speaks again: the remembered
conversation, one message at a time (so a new turn can stop it), as memory will be once the
current turn is remembered. Real llama.cpp inference on the starter model."""

from __future__ import annotations

import logging
import re

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
    monkeypatch.setattr(assistant.registry, "borrow", spy.borrow)
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
    monkeypatch.setattr(assistant.registry, "borrow", spy.borrow)
    assistant.prime(Tier.OMNI_FAST, "en", cancel=cancel)
    assert len(spy.calls) == 1


def test_after_a_turn_the_other_resident_tier_is_primed_without_keeping_it_resident(
        assistant, monkeypatch):
    """The router picks a tier per turn: after a turn, the other tier it could have picked
    reads the exchange as well if its model is resident — borrowed, so its idle timer runs
    on (priming never keeps an idle model resident) and it is never loaded for it."""
    registry = assistant.registry
    spy = StreamSpy(registry)
    monkeypatch.setattr(registry, "borrow", spy.borrow)
    rec = TurnRecord(transcript="Why is the sky blue?", reply="Because of scattering.",
                     tier=Tier.OMNI_FAST.value, language="en")
    assistant.prime_after(Tier.OMNI_FAST, "en", after=rec, cancel=CancelToken())
    assert spy.calls and not registry.is_loaded(Tier.OMNI_QUALITY)  # not loaded for it

    registry.backend(Tier.OMNI_QUALITY)
    key = registry.key(Tier.OMNI_QUALITY)
    idle_before = registry.residency.info(key).idle_s
    spy.calls.clear()
    assistant.prime_after(Tier.OMNI_FAST, "en", after=rec, cancel=CancelToken())
    # Both models read the prompt: one step per remembered exchange, then the whole prompt.
    steps = len(assistant.memory.messages_after(rec.transcript, rec.reply)) // 2 + 1
    assert len(spy.calls) == 2 * steps
    assert registry.residency.info(key).idle_s >= idle_before  # its idle time ran on
    cancel = CancelToken()
    cancel.cancel()
    spy.calls.clear()
    assistant.prime_after(Tier.OMNI_QUALITY, "en", after=rec, cancel=cancel)
    assert spy.calls == []


def _read_now(caplog) -> list[int]:
    """From the llama.cpp backend's debug line: tokens each prompt had to read."""
    return [int(m) for m in re.findall(r"(\d+) read now", caplog.text)]


def test_the_primed_fast_model_reads_only_the_new_question(assistant, caplog):
    """Real llama.cpp: primed after the quality tier's turn, the fast model reads nothing of
    that exchange again when it answers the follow-up, only the new question."""
    assistant.registry.backend(Tier.OMNI_QUALITY)
    for q in ("What is your name?", "Where do you live?"):
        assistant.text_turn(q, None)
    rec = TurnRecord(transcript="Why is the sky blue? Tell me about the light of the sun.",
                     reply="Sunlight is scattered by the air, and blue light the most.",
                     tier=Tier.OMNI_QUALITY.value, language="en")
    assistant.prime_after(Tier.OMNI_QUALITY, "en", after=rec, cancel=CancelToken())
    assistant.remember(rec)
    caplog.clear()
    caplog.set_level(logging.DEBUG, "sarai.models.llamacpp")
    follow_up = assistant.text_turn("And the sea?", None)
    assert follow_up.tier == Tier.OMNI_FAST.value
    assert len(_read_now(caplog)) == 1 and _read_now(caplog)[0] < 20, caplog.text


def test_a_turn_in_another_language_reads_only_its_note_and_question(assistant, caplog,
                                                                      monkeypatch):
    """Real llama.cpp: the note on the turn's language comes after the memory, so a Spanish
    turn after English ones finds the system prompt and the conversation already read (with
    the note in the system prompt, all of it was read again)."""
    for q in ("What is your name?", "Where do you live?"):
        assistant.text_turn(q, None)
    rec = TurnRecord(transcript="Why is the sky blue?", reply="Because of scattering.",
                     tier=Tier.OMNI_FAST.value, language="en")
    assistant.prime_after(Tier.OMNI_FAST, "en", after=rec, cancel=CancelToken())
    assistant.remember(rec)
    spy = StreamSpy(assistant.registry)
    monkeypatch.setattr(assistant.registry, "backend", spy.backend)
    caplog.clear()
    caplog.set_level(logging.DEBUG, "sarai.models.llamacpp")
    spanish = assistant.text_turn("Hola, ¿qué tal estás?", None, language="es")
    assert spanish.tier == Tier.OMNI_FAST.value and spanish.language == "es"
    (sent, _), = spy.calls
    assert sent[:-2] == [("system", assistant._system), *_said(assistant.memory)[:-2]]
    assert sent[-2][0] == "system" and "answer only in Spanish" in sent[-2][1]
    assert sent[-1] == ("user", "Hola, ¿qué tal estás?")
    read = _read_now(caplog)
    assert len(read) == 1 and read[0] < 40, caplog.text

    # Primed in Spanish after it (the note included), the next Spanish turn reads only its
    # own words.
    assistant.prime(Tier.OMNI_FAST, "es")  # the Spanish turn is remembered already
    caplog.clear()
    again = assistant.text_turn("¿Y mañana?", None, language="es")
    assert again.tier == Tier.OMNI_FAST.value
    read_again = _read_now(caplog)
    assert len(read_again) == 1 and read_again[0] < 20, caplog.text
