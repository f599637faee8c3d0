"""Does a transcript read as a finished sentence? Used to end a turn at a shorter silence.

Waiting out the full end-of-turn silence is the largest fixed cost of a spoken turn. When what
was heard so far already ends like a sentence ("…how are you today?"), a shorter silence is
enough to take it as the end; a turn that trails off ("I was thinking that…", "and, um") gets
the full silence. If the user does go on, talking over the answer interrupts it as usual.
"""

from __future__ import annotations

import re

# Words that promise more is coming when a phrase ends on them (English and Spanish).
_OPEN_ENDINGS = frozenset({
    # English
    "and", "or", "but", "so", "because", "if", "that", "which", "who", "the", "a", "an", "to",
    "of", "for", "with", "about", "than", "then", "like", "um", "uh", "er", "hmm", "my",
    "your", "our", "their", "is", "are", "was", "were",
    # Spanish
    "y", "o", "pero", "porque", "si", "que", "cual", "quien", "el", "la", "los", "las", "un",
    "una", "de", "del", "al", "para", "con", "sobre", "como", "entonces", "mi", "tu", "su",
    "es", "son", "era", "eh", "este", "pues",
})
_TERMINAL = re.compile(r"[.?!]['\"»”)]*$")
_WORD = re.compile(r"\w+", re.UNICODE)


def looks_complete(transcript: str, min_words: int = 2) -> bool:
    """True if `transcript` ends like a finished sentence (terminal punctuation, not an
    ellipsis, and not on a word that leaves the phrase open)."""
    text = transcript.strip()
    if not text or text.endswith(("...", "…")) or not _TERMINAL.search(text):
        return False
    words = _WORD.findall(text.lower())
    return len(words) >= min_words and words[-1] not in _OPEN_ENDINGS
