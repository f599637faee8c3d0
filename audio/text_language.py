"""The language a text is written in: a typed turn's, so its answer is written and spoken in
it, and a transcript's where Whisper could not tell (see audio.asr).

A spoken turn's language comes from Whisper. A typed one has only its words: py3langid (a
naive Bayes model over byte n-grams, bundled with the package, ~0.1 ms a sentence) decides
between the languages SARAi speaks out of the box. A single word, or words that read alike in
both ("no", "vale"), are not decided: the turn then takes the configured language.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)

BOTH = ("en", "es")
_SURE = 0.8  # below this probability the guess is not taken
_WORDS = 2  # one word alone is not decided ("hola" reads as English to the model)


class TextLanguage:
    """Guesses which of `languages` a text is written in; None when it cannot tell."""

    def __init__(self, languages: Sequence[str] = BOTH, sure: float = _SURE) -> None:
        self.languages = tuple(dict.fromkeys(languages))
        self._sure = sure
        self._model = None
        self._lock = threading.Lock()

    def _identifier(self):
        with self._lock:
            if self._model is None:
                import numpy as np
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                # Keep only the columns of our languages: the whole model holds ~80 MB.
                full = LanguageIdentifier.from_model_file(MODEL_FILE)
                full.set_languages(list(self.languages))
                self._model = LanguageIdentifier(
                    np.ascontiguousarray(full.nb_ptc), full.nb_pc.copy(), full.nb_classes,
                    full.tk_nextmove, full.tk_output, norm_probs=True, tk_row=full.tk_row)
            return self._model

    def preload(self) -> None:
        self._identifier()

    def guess(self, text: str) -> str | None:
        if len(self.languages) < 2:
            return self.languages[0] if self.languages else None
        if len([w for w in text.split() if any(ch.isalpha() for ch in w)]) < _WORDS:
            return None
        try:
            language, probability = self._identifier().classify(text)
        except Exception as exc:  # a broken install must not cost the turn
            log.warning("cannot tell which language a text is in: %s", exc)
            return None
        return str(language) if probability >= self._sure else None
