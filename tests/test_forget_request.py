"""A whole utterance asking to forget clears the memory, even as Whisper mishears it."""

import pytest

from sarai.daemon.conversation.memory import is_forget_request


@pytest.mark.parametrize("text", [
    "Forget that.", "Please forget that.", "Forget it, please.", "Olvida eso.",
    "olvida esto por favor",
    "Forget out.",  # Whisper's rendering of "forget that" through a room
    "Forgot that.",
    "Forget about it.", "Forget about that, please.",
    "Forget about.",  # Whisper tiny.en's rendering of espeak-ng's "forget that"
])
def test_forget_requests(text):
    assert is_forget_request(text)


@pytest.mark.parametrize("text", [
    "Don't forget that milk.", "Forget Paris.", "What is that?", "Forget the milk",
    "forget", "", "Forget about Paris.", "Don't forget about it.",
])
def test_not_forget_requests(text):
    assert not is_forget_request(text)
