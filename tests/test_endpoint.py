"""A turn that reads as finished may end at a shorter silence; one that trails off may not."""

import pytest

from sarai.daemon.conversation.endpoint import looks_complete


@pytest.mark.parametrize("text", [
    "Hello, how are you today?",
    "Good morning, I feel a bit tired.",
    "¿Qué tiempo hará mañana?",
    "Thank you, that was kind!",
    'He said "stop."',
])
def test_finished_sentences(text):
    assert looks_complete(text)


@pytest.mark.parametrize("text", [
    "",
    "Hello",  # no closing punctuation
    "I was thinking that...",
    "Estoy pensando que…",
    "Tell me about the.",  # Whisper's period after an open word
    "and then, um.",
    "Quiero ir a la.",
    "Yes.",  # one word: too little to be sure
])
def test_open_or_trailing_phrases(text):
    assert not looks_complete(text)
