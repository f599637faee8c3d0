"""Matching a wake phrase ("hey SARAi", "oye SARAi") at the start of a transcript.

Whisper spells a name it has never seen in many ways ("Sarai", "Sara I", "Saray", "Sorry"),
so the match is fuzzy and only looks at the first words.
"""

from __future__ import annotations

import re
import unicodedata
from difflib import SequenceMatcher

_WORD = re.compile(r"[a-z0-9ñ]+")


def plain_words(text: str) -> list[str]:
    """The words of a transcript, lower case, without accents or punctuation."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _WORD.findall(text)


def match_wake(transcript: str, phrases: tuple[str, ...] | list[str],
               threshold: float = 0.75) -> tuple[bool, str]:
    """(True, the rest of the request) if the transcript starts with a wake phrase."""
    words = plain_words(transcript)
    raw = re.findall(r"\S+", transcript)
    for phrase in phrases:
        target = " ".join(plain_words(phrase))
        n = len(target.split())
        # The name may be split in two ("sara i") or merged, so try n-1 … n+1 words.
        scored = [
            (SequenceMatcher(None, " ".join(words[:k]), target).ratio(), k)
            for k in (n - 1, n, n + 1)
            if 0 < k <= len(words)
        ]
        if scored:
            ratio, k = max(scored)
            if ratio >= threshold:
                rest = " ".join(raw[k:]) if len(raw) >= k else ""
                return True, rest.lstrip(" ,.!?¡¿").strip()
    return False, transcript
