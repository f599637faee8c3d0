"""Speech recognition with faster-whisper (CTranslate2 Whisper models).

With `language: auto` each turn is heard in one of `auto_languages` at little more than the
cost of English alone: the fast English-only model decodes the turn first, and its transcript
stands when the model was sure of it (its mean token log-probability is at least
`english_min_logprob`: English speech scores about −0.15, other languages below −0.5). Only
when it was not does the multilingual model encode the turn once, pick the language
among `auto_languages` (English when it has at least `english_min_share` of the probability
among them), and decode that encoding in that language; when that guess is English although
the English model was unsure, the other language is decoded first and stands when the model
was sure of it (`other_min_logprob`) and its words clearly read as that language (py3langid,
`audio.text_language`); else English is decoded
too and the more probable transcript wins (a short Spanish turn often sounds English to the
language guess) — unless its words clearly read as the other language, or the guess was
all but sure of English (`english_sure_share`) and no transcript reads as the other
language: then English. So an
English turn costs what it did, and a Spanish one pays for a multilingual decode on top —
except after a turn heard in another language: then the language guess goes first, and a turn
it hears in that language skips the English model (see `_auto_once`).

Other languages are decoded with a wider beam (`beam_size_other`) and without the English
prompt, which the multilingual model otherwise follows into English spellings.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.settings import AsrSettings
from sarai.audio.short_window import (
    WindowPlan,
    decode_window,
    encode_window,
    language_shares,
)
from sarai.audio.text_language import TextLanguage

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    model: str


class Transcriber:
    """Turns 16 kHz mono utterances into text.

    `model_dirs` maps a model name from the settings (e.g. "whisper-tiny-en") to the folder
    holding its CTranslate2 files. Models load on first use and then stay resident.
    """

    def __init__(self, settings: AsrSettings, model_dirs: dict[str, Path]) -> None:
        self._s = settings
        self._dirs = model_dirs
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()
        self._plan_en = WindowPlan(min_window_s=settings.min_window_s)
        self._plan_other = WindowPlan(min_window_s=settings.min_window_s_multilingual)
        self._last_language: str | None = None  # of the last turn heard (auto)
        self._written = TextLanguage(settings.auto_languages)  # what a transcript reads as

    @property
    def text_language(self) -> TextLanguage:
        """What reads which of `auto_languages` a text is written in (one model, shared with
        whoever else needs it: it takes ~0.7 s to load)."""
        return self._written

    def model_name_for(self, language: str | None) -> str:
        lang = language or self._s.language
        if lang == AUTO:
            return self._s.model_en if "en" in self._s.auto_languages \
                else self._s.model_multilingual
        return self._s.model_en if lang == "en" else self._s.model_multilingual

    def model_names(self, language: str | None = None) -> list[str]:
        """Every model a turn in `language` (default: the setting) may need."""
        lang = language or self._s.language
        if lang != AUTO:
            return [self.model_name_for(lang)]
        names = [self._s.model_en] if "en" in self._s.auto_languages else []
        if set(self._s.auto_languages) - {"en"} or not names:
            names.append(self._s.model_multilingual)
        return names

    def _model(self, name: str):  # -> faster_whisper.WhisperModel
        with self._lock:
            if name in self._models:
                return self._models[name]
            folder = self._dirs.get(name)
            if folder is None or not (Path(folder) / "model.bin").is_file():
                raise AudioError(
                    f"speech recognition model '{name}' is not installed "
                    f"(looked in {folder}); run 'sarai setup'"
                )
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(
                    str(folder),
                    device="cpu",
                    compute_type=self._s.compute_type,
                    cpu_threads=self._s.threads,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise AudioError(f"cannot load speech recognition model '{name}': {exc}") from exc
            self._models[name] = model
            return model

    def preload(self, name: str | None = None) -> None:
        """Load `name`, or every model the configured language may need."""
        for n in [name] if name else self.model_names():
            self._model(n)
        if self._s.language == AUTO and len(self._s.auto_languages) > 1:
            try:
                self._written.preload()
            except Exception as exc:  # a language py3langid lacks: Whisper alone decides
                log.warning("cannot read which language a transcript is written in: %s", exc)

    def transcribe(self, samples: np.ndarray, language: str | None = None, *,
                   fit_window: bool | None = None) -> Transcript:
        """Transcribe int16 or float32 16 kHz mono audio (`fit_window` overrides the
        setting: False decodes on Whisper's own 30 s window)."""
        lang = language or self._s.language
        audio = samples.astype(np.float32) / 32768.0 if samples.dtype == np.int16 else samples
        fit = self._s.fit_window if fit_window is None else fit_window
        if lang == AUTO:
            return self._auto(audio, fit)
        name = self.model_name_for(lang)
        model = self._model(name)
        window = self._window(name, len(audio) / SAMPLE_RATE, fit)
        if window is not None:
            # A short turn is decoded on a window sized to it (a fraction of the 30 s cost);
            # if Whisper loops on it, the full window decides.
            encoded = encode_window(model, audio, window)
            r = decode_window(model, encoded, len(audio) / SAMPLE_RATE, lang,
                              **self._decoding(lang))
            if not r.degenerate:
                return Transcript(r.text, r.language, r.language_probability, name)
            self._looped(audio)
        return self._full_window(name, audio, lang)

    # --- choosing the language ------------------------------------------------------

    def _window(self, name: str, duration_s: float, fit: bool) -> float | None:
        """The short window model `name` decodes a turn on (None: Whisper's own 30 s)."""
        if not fit:
            return None
        plan = self._plan_en if name == self._s.model_en else self._plan_other
        return plan.window_s(duration_s)

    def _auto(self, audio: np.ndarray, fit: bool) -> Transcript:
        tr = self._auto_once(audio, fit)
        if tr.text.strip():
            self._last_language = tr.language
        return tr

    def _auto_once(self, audio: np.ndarray, fit: bool) -> Transcript:
        s = self._s
        duration = len(audio) / SAMPLE_RATE
        window = self._window(s.model_multilingual, duration, fit)
        window_en = self._window(s.model_en, duration, fit)
        looped_english = False
        guess: tuple[object, dict[str, float]] | None = None  # the multilingual encoding
        if window is not None and self._last_language not in (None, "en"):
            # The last turn was not English: this one most likely is not either, so the
            # language guess goes first, and a turn it hears in that language is decoded
            # without the English model's try. (It leans English: a turn it does not hear as
            # English is hardly ever English.) Heard as English, the turn goes on as any.
            model = self._model(s.model_multilingual)
            encoded = encode_window(model, audio, window)
            shares = language_shares(model, encoded, s.auto_languages)
            guess = (encoded, shares)
            lang, share = self._pick(shares)
            if lang != "en":
                r = decode_window(model, encoded, duration, lang, language_probability=share,
                                  **self._decoding(lang))
                if not r.degenerate:
                    return Transcript(r.text, lang, share, s.model_multilingual)
        if "en" in s.auto_languages:
            if window_en is None:
                tr, avg = self._full_window_scored(s.model_en, audio, "en")
                if avg >= s.english_min_logprob:
                    return tr
            else:
                first = decode_window(self._model(s.model_en),
                                      encode_window(self._model(s.model_en), audio, window_en),
                                      duration, "en", **self._decoding("en"))
                sure = first.avg_logprob >= s.english_min_logprob
                if sure and not first.degenerate:
                    return Transcript(first.text, "en", 1.0, s.model_en)
                # A loop is no evidence of English: a model repeating itself is sure of every
                # token, even on Spanish it cannot understand. The language guess decides.
                looped_english = sure
                log.debug("English model %s (mean log-prob %.2f): asking the multilingual "
                          "model which language this is",
                          "looped" if first.degenerate else "unsure", first.avg_logprob)
        name = s.model_multilingual
        model = self._model(name)
        if window is None:
            return self._full_window_auto(name, audio)
        if guess is None:
            encoded = encode_window(model, audio, window)
            shares = language_shares(model, encoded, s.auto_languages)
        else:
            encoded, shares = guess
        lang, share = self._pick(shares)
        if looped_english and lang == "en":
            self._looped(audio)  # English after all: the English model's full window
            return self._full_window(s.model_en, audio, "en")
        if lang == "en" and len(shares) > 1:
            # The English model was unsure, yet the language guess leans English: on a short
            # turn that guess is often wrong (it hears English in two Spanish words). The
            # other language is decoded first, and it settles the turn when the model was
            # sure of it and its words clearly read as that language (py3langid,
            # `audio.text_language`). Words alone are not enough: synthetic English read as
            # Spanish can read clearly as Spanish ("Why do cats purr?" as "¿Por qué no puedo
            # creer?"), but at mean log-prob −0.69 to −1.31 on the test sentences, where the
            # Spanish tuning recordings that take this way score −0.28 to −0.63. Else English
            # is decoded too, and the model's surer transcript wins.
            other = max((k for k in shares if k != "en"), key=shares.__getitem__)
            r2 = decode_window(model, encoded, duration, other,
                               language_probability=shares[other], **self._decoding(other))
            if (not r2.degenerate and r2.avg_logprob >= s.other_min_logprob
                    and self._written.guess(r2.text) == other):
                return Transcript(r2.text, other, shares[other], name)
            r = decode_window(model, encoded, duration, "en", language_probability=share,
                              **self._decoding("en"))
            picked = other if r2.avg_logprob > r.avg_logprob else "en"
            # The language token does not fix the language Whisper writes in: told English,
            # it may write the Spanish it hears ("Sus contraescenias han sido cambiadas."), and
            # be surer of it than of its Spanish decode. Words that clearly read as one of
            # the two languages decide.
            best = r2 if picked == other else r
            written = self._written.guess(best.text)
            if written in ("en", other) and written != picked:
                log.debug("heard as %s, but the words read as %s: %s", picked, written,
                          best.text)
                picked = written
            elif (picked == other and written != other and share >= s.english_sure_share
                    and self._written.guess(r.text) != other):
                # The guess is all but sure it is English and no transcript reads as the
                # other language: a slightly surer decode in it is not evidence enough
                # (synthetic "Why do cats purr?" as "¿Y du cat spur?").
                log.debug("heard as %s, but the guess gives English %.3f and no words read "
                          "as %s: %s", other, share, other, best.text)
                picked = "en"
            if picked == other:
                lang, share, r = other, shares[other], r2
        else:
            r = decode_window(model, encoded, duration, lang, language_probability=share,
                              **self._decoding(lang))
        if not r.degenerate:
            return Transcript(r.text, lang, share, name)
        self._looped(audio)
        return self._full_window(name, audio, lang, share)

    def _pick(self, shares: dict[str, float]) -> tuple[str, float]:
        """The language among auto_languages, and its share of the probability."""
        if "en" in shares and shares["en"] >= self._s.english_min_share:
            return "en", shares["en"]
        others = {k: v for k, v in shares.items() if k != "en"} or shares
        lang = max(others, key=others.__getitem__)
        return lang, shares[lang]

    # --- decoding ---------------------------------------------------------------------

    def _decoding(self, lang: str) -> dict:
        if lang == "en":
            return {"beam_size": self._s.beam_size, "prompt_text": self._s.prompt or None}
        return {"beam_size": self._s.beam_size_other, "prompt_text": None}

    @staticmethod
    def _looped(audio: np.ndarray) -> None:
        log.debug("short-window decode looped on %.1f s; using the full window",
                  len(audio) / SAMPLE_RATE)

    def _full_window_scored(self, name: str, audio: np.ndarray, lang: str,
                            probability: float = 1.0) -> tuple[Transcript, float]:
        """Whisper's own 30 s windows; the transcript and its mean token log-probability."""
        model = self._model(name)
        d = self._decoding(lang)
        segments, _ = model.transcribe(
            audio,
            language=lang,
            beam_size=d["beam_size"],
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=d["prompt_text"],
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        weights = [max(1, len(s.tokens)) for s in segments]
        avg = (sum(s.avg_logprob * w for s, w in zip(segments, weights, strict=True))
               / sum(weights)) if segments else 0.0
        return Transcript(text, lang, probability, name), avg

    def _full_window(self, name: str, audio: np.ndarray, lang: str,
                     probability: float = 1.0) -> Transcript:
        return self._full_window_scored(name, audio, lang, probability)[0]

    def _full_window_auto(self, name: str, audio: np.ndarray) -> Transcript:
        """A turn too long for a short window: the language from its first 30 s."""
        model = self._model(name)
        _, _, ranked = model.detect_language(audio)
        probs = dict(ranked)
        kept = {k: probs.get(k, 0.0) for k in self._s.auto_languages}
        total = sum(kept.values()) or 1.0
        lang, share = self._pick({k: v / total for k, v in kept.items()})
        return self._full_window(name, audio, lang, share)
