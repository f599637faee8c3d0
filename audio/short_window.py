"""Whisper on a window sized to the utterance instead of a fixed 30 seconds.

faster-whisper pads every input to Whisper's 30 s window, so the encoder costs the same for a
two-second question as for half a minute of speech: most of a short turn's recognition time
is spent encoding silence. CTranslate2's encoder also takes shorter inputs, and its cost falls
with the window (on two cores, tiny.en encodes 30 s in ~300 ms and 10 s in ~40 ms).

Whisper was trained on 30 s windows, and on very short ones its decoder tends to loop, so
the window keeps a generous margin of silence after the speech (`min_window_s`, and at least
`margin_s` past its end), and a result that looks degenerate (it ran to the token cap, or
repeats itself) is reported as such so the caller can decode the full window instead —
unless the decoder merely started over once after a finished clause ("Press 3 to re-record
your message. Press 3 to re-record"): then the words up to the restart are the transcript,
which the full window would have given for several times the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sarai.audio.pcm import SAMPLE_RATE

FULL_WINDOW_S = 30.0
# Whisper's decoder writes about three tokens a second of English; the cap lets a loop show.
_TOKENS_PER_S = 8
_MIN_TOKENS = 16
_CLAUSE_ENDS = frozenset(".?!,;:。？！")


@dataclass(frozen=True)
class WindowPlan:
    """How long a window an utterance gets (None: too long, use the full 30 s path)."""

    min_window_s: float = 10.0
    margin_s: float = 2.0

    def window_s(self, duration_s: float) -> float | None:
        want = max(self.min_window_s, duration_s + self.margin_s)
        if want >= FULL_WINDOW_S:
            return None
        return float(np.ceil(want))


@dataclass(frozen=True)
class WindowResult:
    text: str
    language: str
    language_probability: float
    degenerate: bool  # looped or ran into the cap: decode the full window instead
    avg_logprob: float = 0.0  # mean log-probability of its tokens, as faster-whisper reports it


def _repeats(tokens: list[int], long_ngram: int = 4) -> bool:
    """True if the tail of `tokens` is one n-gram said three or more times in a row, or a
    stretch of `long_ngram` or more tokens comes twice (Whisper starting over on a window
    too short for it: "Can you tell me a joke? Can you tell me a")."""
    n_tok = len(tokens)
    for n in range(1, min(12, n_tok // 3) + 1):
        tail = tokens[-n:]
        if tokens[-2 * n : -n] == tail and tokens[-3 * n : -2 * n] == tail:
            return True
    seen: set[tuple[int, ...]] = set()
    for i in range(n_tok - long_ngram + 1):
        gram = tuple(tokens[i : i + long_ngram])
        if gram in seen:
            return True
        seen.add(gram)
    return False


def _started_over(tokens: list[int], ends_clause, min_tokens: int = 3) -> int | None:
    """Where the decoder started over, if it did so once: the length of the transcript before
    a tail of at least `min_tokens` that says again (a beginning of) a clause already said,
    right after a token ending a clause ("Your call cannot be completed as dialed. Your call
    cannot be completed" → before the second "Your"; "…extension. Please try again. Please
    try again." → before the second "Please"). `ends_clause(token)` tells whether a token
    ends a clause. None when the tokens are not one such restart."""
    n_tok = len(tokens)
    # Where a clause may begin: the start, and after each token that ends one.
    starts = [0, *(i + 1 for i, t in enumerate(tokens) if ends_clause(t))]
    for k in starts:
        if not min_tokens <= k <= n_tok - min_tokens:
            continue
        tail = tokens[k:]
        for j in starts:
            if j + len(tail) > k:
                break
            if tokens[j : j + len(tail)] == tail:
                return k
    return None


def encode_window(model, audio: np.ndarray, window_s: float):
    """Whisper's encoding of float32 16 kHz mono `audio` (shorter than the window) on a
    `window_s` window; one encoding serves language detection and decoding alike."""
    from faster_whisper.transcribe import get_ctranslate2_storage

    n_samples = int(window_s * SAMPLE_RATE)
    padded = np.zeros(n_samples, np.float32)
    padded[: min(len(audio), n_samples)] = audio[:n_samples]
    fe = model.feature_extractor
    # Zero audio before the log-mel, as Whisper pads, so the padding looks like its silence.
    features = fe(padded)[:, : n_samples // fe.hop_length]
    return model.model.encode(get_ctranslate2_storage(features[None]), to_cpu=False)


def language_shares(model, encoded, among: Sequence[str] | None = None) -> dict[str, float]:
    """Whisper's language probabilities for an encoding (multilingual models only); with
    `among`, only those languages, rescaled to sum to one."""
    ranked = model.model.detect_language(encoded)[0]
    probs = {token[2:-2]: float(p) for token, p in ranked}
    if not among:
        return probs
    kept = {lang: probs.get(lang, 0.0) for lang in among}
    total = sum(kept.values())
    if total <= 0:
        return {lang: 1.0 / len(kept) for lang in kept}
    return {lang: p / total for lang, p in kept.items()}


def decode_window(
    model,  # faster_whisper.WhisperModel
    encoded,
    duration_s: float,
    language: str,
    *,
    beam_size: int = 1,
    prompt_text: str | None = None,
    language_probability: float = 1.0,
) -> WindowResult:
    """Decode an encoding from `encode_window` of `duration_s` seconds of speech."""
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    multilingual = model.model.is_multilingual
    tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe",
                          language=language if multilingual else "en")
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    if prompt_text:
        prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt_text.strip()), *prompt]
    cap = max(_MIN_TOKENS, int(duration_s * _TOKENS_PER_S))
    result = model.model.generate(
        encoded, [prompt], beam_size=beam_size, max_length=len(prompt) + cap,
        suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        return_scores=True,
    )[0]
    sequence = result.sequences_ids[0]
    tokens = [t for t in sequence if t < tokenizer.eot]
    degenerate = len(tokens) >= cap or _repeats(tokens)
    if degenerate:
        k = _started_over(tokens, lambda t: tokenizer.decode([t]).rstrip()[-1:] in _CLAUSE_ENDS)
        if k is not None and not _repeats(tokens[:k]):
            tokens, degenerate = tokens[:k], False
    # CTranslate2's score is already divided by the length; faster-whisper's avg_logprob
    # divides the sum by the length plus one (the end token).
    avg = float(result.scores[0]) * len(sequence) / (len(sequence) + 1) if result.scores else 0.0
    text = tokenizer.decode(tokens).strip()
    return WindowResult(text, language if multilingual else "en", float(language_probability),
                        degenerate, avg)


def transcribe_window(
    model,  # faster_whisper.WhisperModel
    audio: np.ndarray,
    window_s: float,
    *,
    language: str | None,
    beam_size: int = 1,
    prompt_text: str | None = None,
) -> WindowResult:
    """Decode float32 16 kHz mono `audio` (shorter than the window) on a `window_s` window.

    `language=None` detects it (multilingual models); English-only models are always "en".
    `prompt_text` is shown to the decoder as text said before (Whisper's initial prompt),
    which makes it spell names in it, such as the assistant's, the same way.
    """
    encoded = encode_window(model, audio, window_s)
    probability = 1.0
    if not model.model.is_multilingual:
        language = "en"
    elif language is None:
        shares = language_shares(model, encoded)
        language = max(shares, key=shares.__getitem__)
        probability = shares[language]
    return decode_window(model, encoded, len(audio) / SAMPLE_RATE, language,
                         beam_size=beam_size, prompt_text=prompt_text,
                         language_probability=probability)
