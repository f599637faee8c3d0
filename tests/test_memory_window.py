"""The remembered conversation: bounded, and its start changes rarely (every change makes the
models read the whole conversation again)."""

from __future__ import annotations

from sarai.daemon.conversation.memory import Conversation


def test_the_oldest_exchanges_go_in_halves_and_the_start_changes_rarely():
    memory = Conversation(max_turns=4, max_tokens=10_000)
    kept, starts = [], []
    for i in range(12):
        memory.add(f"question {i}", f"answer {i}")
        kept.append(len(memory))
        starts.append(memory.messages()[0].content)
    assert kept == [1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 3]
    assert memory.messages()[-1].content == "answer 11"
    # The first remembered message changed 3 times in 12 turns, not after each of the last 8.
    assert sum(a != b for a, b in zip(starts, starts[1:], strict=False)) == 3


def test_the_token_budget_keeps_the_newest_exchange_whatever_its_size():
    memory = Conversation(max_turns=10, max_tokens=100)
    memory.add("short", "short")
    memory.add("long " * 200, "long " * 200)
    assert [m.content for m in memory.messages()][-1].startswith("long")
    assert len(memory) == 1
    memory.add("a", "b")
    assert len(memory) == 1 and memory.messages()[0].content == "a"


def test_none_kept_when_history_is_off():
    memory = Conversation(max_turns=0, max_tokens=600)
    memory.add("q", "a")
    assert len(memory) == 0
