"""Splitting a stream of tokens into speakable pieces, so speech starts before the reply ends."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# A sentence ends at . ! ? … (or their Spanish openers' partners) followed by whitespace,
# or at a line break. Digits around a dot ("3.5") are not an end because no space follows.
_END = re.compile(r"([.!?…]+[\"')\]]*)\s+|\n+")
# Very long clauses are cut at a comma/semicolon so the first audio is not held back.
_CLAUSE = re.compile(r"([,;:])\s+")
_MAX_CLAUSE_CHARS = 90
# The very first clause is spoken as soon as it is complete, so the first audio comes early:
# "I'm sorry," is a piece of its own (4 tokens to write and ~70 ms to say on a 2-core machine,
# not 9 tokens and ~140 ms for "I'm sorry, but as an AI,"); "Well," alone is too short.
_FIRST_CLAUSE_CHARS = 8
# A run-on reply with no punctuation at all is cut between words: the voice's time and memory
# for a piece grow with its length (~80 MB more for 120 characters, ~500 MB for 360).
_MAX_PIECE_CHARS = 120
# ...and so is a first clause that runs on: its first sound would otherwise wait for all of
# it to be written and synthesised ("You can set your speaking volume to the default level by
# going to your control panel and..." took 740 ms to synthesise, a 32-character piece ~150).
# It is cut before a word that opens a phrase ("…volume | to the default…") where there is one.
_FIRST_RUN_ON_CHARS = 40
_FIRST_RUN_ON_MIN_CHARS = 16
_PHRASE_OPENERS = frozenset({
    "to", "by", "for", "with", "in", "on", "at", "of", "from", "about", "and", "or", "but",
    "so", "because", "that", "which", "who", "when", "where", "if", "as", "while",
    "a", "para", "por", "con", "en", "de", "desde", "sobre", "y", "o", "pero", "porque", "que",
    "cuando", "donde", "si", "como", "mientras",
})
_SPACE = re.compile(r"\s+")


class SentenceSplitter:
    """Feed text fragments, get complete sentences back."""

    def __init__(self) -> None:
        self._buf = ""
        self._emitted = False

    def feed(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            m = _END.search(self._buf)
            if m is None:
                limit = _MAX_CLAUSE_CHARS if self._emitted else _FIRST_CLAUSE_CHARS
                m = next((c for c in _CLAUSE.finditer(self._buf) if c.end() > limit), None)
                if m is None:
                    m = _cut(self._buf) if self._emitted else _first_cut(self._buf)
                if m is None:
                    break
            piece, self._buf = self._buf[: m.end()].strip(), self._buf[m.end() :]
            if _speakable(piece):
                out.append(piece)
                self._emitted = True
        return out

    def flush(self) -> list[str]:
        out = []
        while (m := _cut(self._buf)) is not None:
            piece, self._buf = self._buf[: m.end()].strip(), self._buf[m.end() :]
            out.append(piece)
        piece, self._buf = self._buf.strip(), ""
        return [p for p in [*out, piece] if _speakable(p)]


def _cut(text: str) -> re.Match[str] | None:
    """Where a piece too long to speak at once ends: the last space before the limit."""
    if len(text) <= _MAX_PIECE_CHARS:
        return None
    spaces = list(_SPACE.finditer(text, 1, _MAX_PIECE_CHARS))
    return spaces[-1] if spaces else _SPACE.search(text, _MAX_PIECE_CHARS)


def _first_cut(text: str) -> re.Match[str] | None:
    """Where a first clause longer than `_FIRST_RUN_ON_CHARS` ends: before the last word
    that opens a phrase, else at the last space before the limit."""
    if len(text) <= _FIRST_RUN_ON_CHARS:
        return None
    spaces = [s for s in _SPACE.finditer(text, 1) if s.start() <= _FIRST_RUN_ON_CHARS]
    if not spaces:
        return _SPACE.search(text, _FIRST_RUN_ON_CHARS)
    # A word counts once it is whole: another space follows it.
    for here, nxt in zip(reversed(spaces[:-1]), reversed(spaces[1:]), strict=True):
        if here.start() < _FIRST_RUN_ON_MIN_CHARS:
            break
        if text[here.end():nxt.start()].lower() in _PHRASE_OPENERS:
            return here
    return spaces[-1]


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def sentences(chunks: Iterable[str]) -> Iterator[str]:
    """Convenience: the sentences of a whole token stream."""
    splitter = SentenceSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.flush()
