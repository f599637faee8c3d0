"""Whether what the microphone heard is SARAi's own words coming back.

The echo canceller and the gate keep SARAi's voice out of the turns it hears; this is the
last check, on the words. It is asked only about speech that began while SARAi's voice or its
echo may have been in the room (see FrontEnd), and it compares the transcript with the end of
the answer heard just before: an echo that came back later than expected, or a residue the
gate let through, is a run of SARAi's last words.
"""

from __future__ import annotations

import difflib

from sarai.daemon.conversation.wake import plain_words

# How far back in the answer an echo can come from: its last 4-5 s (an echo later than the
# echo window, a residue let through as it died away). Not further: a small model's answer
# often opens with the question's own words ("To decrease the audio volume from other
# participants, you can…"), and the user's next question may well open with them again.
TAIL_WORDS = 12
MIN_WORDS = 2  # a single word ("yes", "no") may well be the user's, so it is never matched
MATCH_RATIO = 0.8  # how alike the transcript and a run of the answer must be (ASR slips)


def said_again(transcript: str, said: str) -> bool:
    """The transcript is (nearly word for word) a run of the last words of `said`."""
    heard, tail = plain_words(transcript), plain_words(said)[-TAIL_WORDS:]
    if len(heard) < MIN_WORDS or len(tail) < len(heard) - 1:
        return False
    n = len(heard)
    for size in {max(1, n - 1), n, n + 1}:
        for i in range(max(1, len(tail) - size + 1)):
            if difflib.SequenceMatcher(None, heard, tail[i:i + size]).ratio() >= MATCH_RATIO:
                return True
    return False
