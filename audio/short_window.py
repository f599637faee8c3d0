"""Whisper on a window sized to the utterance instead of a fixed 30 seconds.

faster-whisper pads every input to Whisper's 30 s window, so the encoder costs the same for a
two-second question as for half a minute of speech: most of a short turn's recognition time
is spent encoding silence. CTranslate2's encoder also takes shorter inputs, and its cost falls
with the window (on two cores, tiny.en encodes 30 s in ~300 ms and 10 s in ~40 ms).

Whisper was trained on 30 s windows, and on very short ones its decoder tends to loop, so
the window keeps a generous margin of silence after the speech (`min_window_s`, and at least
`margin_s` past its end), and a result that looks degenerate (it ran to the token cap, or
repeats itself) is reported as such so the caller can decode the full window instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sarai.audio.pcm import SAMPLE_RATE

FULL_WINDOW_S = 30.0
# Whisper's decoder writes about three tokens a second of English; the cap lets a loop show.
_TOKENS_PER_S = 8
_MIN_TOKENS = 16


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
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_ctranslate2_storage, get_suppressed_tokens

    n_samples = int(window_s * SAMPLE_RATE)
    padded = np.zeros(n_samples, np.float32)
    padded[: min(len(audio), n_samples)] = audio[:n_samples]
    fe = model.feature_extractor
    # Zero audio before the log-mel, as Whisper pads, so the padding looks like its silence.
    features = fe(padded)[:, : n_samples // fe.hop_length]
    encoded = model.model.encode(get_ctranslate2_storage(features[None]), to_cpu=False)

    multilingual = model.model.is_multilingual
    probability = 1.0
    if not multilingual:
        language = "en"
    elif language is None:
        ranked = model.model.detect_language(encoded)[0]
        token, probability = ranked[0]
        language = token[2:-2]
    tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe",
                          language=language)
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    if prompt_text:
        prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + prompt_text.strip()), *prompt]
    cap = max(_MIN_TOKENS, int(len(audio) / SAMPLE_RATE * _TOKENS_PER_S))
    result = model.model.generate(
        encoded, [prompt], beam_size=beam_size, max_length=len(prompt) + cap,
        suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
    )[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    degenerate = len(tokens) >= cap or _repeats(tokens)
    text = tokenizer.decode(tokens).strip()
    return WindowResult(text, language, float(probability), degenerate)
