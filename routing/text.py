"""Text helpers the router shares: normalisation, n-grams, phrase matching, noise detection.

Spanish and English both pass through the same normalisation (lower case, accents removed),
so "piénsalo" typed by hand and "piensalo" from a speech recogniser look alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_WORD = re.compile(r"[a-z0-9ñ]+")
# What a speech recogniser writes for sounds that are not words: [music], (applause),
# *laughs*, ♪ … ♪. A transcript that is nothing but these has no question in it.
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|<[^>]*>|[♪♫♩♬]")
_HAS_WORD = re.compile(r"\w", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, accents removed (ñ kept), every run of non-word characters one space.

    "porque" becomes "por que": speech recognisers write "¿por qué?" (why) and "porque"
    (because) alike, so the router cannot rely on telling them apart.
    """
    text = text.lower().replace("ñ", "\0")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).replace("\0", "ñ")
    return " ".join("por que" if w == "porque" else w for w in _WORD.findall(text))


def words(normalised: str) -> list[str]:
    return normalised.split()


def strip_annotations(text: str) -> str:
    """The words of a transcript without its sound annotations ("[music] hi" → " hi")."""
    return _ANNOTATION.sub(" ", text)


def is_noise_only(text: str) -> bool:
    """True when a transcript holds no word outside sound annotations ("[music]", "...")."""
    return _HAS_WORD.search(strip_annotations(text)) is None


def ngrams(normalised: str, *, char_sizes: tuple[int, ...] = (3, 4, 5)) -> list[str]:
    """Word unigrams and bigrams plus character n-grams inside word boundaries.

    Character n-grams let "explícame", "explicar" and "explain" share evidence, which a
    small training set needs; word n-grams carry the phrases a reason can quote.
    """
    toks = normalised.split()
    out = [f"w:{t}" for t in toks]
    out += [f"w:{a} {b}" for a, b in zip(toks, toks[1:], strict=False)]
    for t in toks:
        padded = f" {t} "
        for n in char_sizes:
            out += [f"c:{padded[i : i + n]}" for i in range(max(1, len(padded) - n + 1))]
    return out


def _one_edit_apart(a: str, b: str) -> bool:
    """True when `a` and `b` differ by at most one insertion, deletion or substitution."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i + 1 :] == b[i:] if len(a) > len(b) else a[i:] == b[i + 1 :]


_FUZZY_MIN_LEN = 6  # shorter words must match exactly: "sound" must not match "round"


class PhraseSet:
    """Phrases matched as whole words in normalised text; a leading '^' means "at the start".

    A word of six letters or more may also match with one letter wrong, because speech
    recognisers misspell ("pienzalo", "cantion") far more often than people type them.
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases = tuple(p for p in phrases if normalise(p))
        self._rx = []
        self._fuzzy: list[tuple[str, bool, list[str]]] = []
        for p in self.phrases:
            anchored = p.lstrip().startswith("^")
            label = p.lstrip().lstrip("^")
            head = "^" if anchored else r"(?<![a-z0-9ñ])"
            body = normalise(p)
            self._rx.append((label, re.compile(head + re.escape(body) + r"(?![a-z0-9ñ])")))
            toks = body.split()
            if any(len(t) >= _FUZZY_MIN_LEN for t in toks):
                self._fuzzy.append((label, anchored, toks))

    def first(self, normalised: str) -> str | None:
        """The first configured phrase found in `normalised`, or None."""
        for phrase, rx in self._rx:
            if rx.search(normalised):
                return phrase
        words = normalised.split()
        for phrase, anchored, toks in self._fuzzy:
            starts = range(1) if anchored else range(len(words) - len(toks) + 1)
            for i in starts:
                window = words[i : i + len(toks)]
                if len(window) == len(toks) and all(
                    w == t or (len(t) >= _FUZZY_MIN_LEN and _one_edit_apart(w, t))
                    for w, t in zip(window, toks, strict=True)
                ):
                    return phrase
        return None
