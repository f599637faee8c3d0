"""Measuring the router on the labelled sets: accuracy, confusion matrix, decision latency.

Typed turns are scored from their text. Spoken turns go the way a live one does: espeak-ng
speech (over generated music or noise for the audio-heavy rows) → VAD → audio analysis →
speech recognition → decision, so recognition errors count against the router too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sarai.audio.settings import VadSettings
from sarai.routing.audio_features import analyse, utterance_in
from sarai.routing.dataset import Row
from sarai.routing.router import Action, Router, TurnSignals
from sarai.routing.spoken import over_background, speak

SKIP = "skip"  # what a turn the router declined to answer counts as
# How far the voice stands above the background in the audio-heavy clips (RMS, dB).
BACKGROUND_SNR_DB = {"music": 8.0, "noise": 8.0}

Transcribe = Callable[[np.ndarray, str], str]  # (int16 samples, language) → text


@dataclass(frozen=True)
class Outcome:
    row: Row
    predicted: str  # a tier, or SKIP
    reason: str
    decide_ms: float
    transcript: str | None = None
    asr_ms: float | None = None
    analysis_ms: float | None = None

    @property
    def correct(self) -> bool:
        return self.predicted == self.row.tier.value


def pick(rows: Sequence[Row], per_lang: int | None) -> list[Row]:
    """`per_lang` rows of each language, evenly spread so every kind of row is sampled."""
    if per_lang is None:
        return list(rows)
    out: list[Row] = []
    for lang in sorted({r.lang for r in rows}):
        mine = [r for r in rows if r.lang == lang]
        k = min(per_lang, len(mine))
        idx = np.unique(np.linspace(0, len(mine) - 1, k).round().astype(int)) if k else []
        out += [mine[i] for i in idx]
    return out


def run_text(router: Router, rows: Sequence[Row]) -> list[Outcome]:
    """Decide every row from its text; rows that need their sound are left to run_spoken."""
    out = []
    for row in rows:
        if row.background is not None:
            continue
        d = router.decide(TurnSignals(row.text))
        predicted = SKIP if d.action is Action.SKIP else d.tier.value
        out.append(Outcome(row, predicted, d.reason, d.latency_ms))
    return out


def run_spoken(router: Router, rows: Sequence[Row], transcribe: Transcribe,
               vad: VadSettings, progress: Callable[[str], None] | None = None) -> list[Outcome]:
    out = []
    for i, row in enumerate(rows):
        # A second of quiet (or of the background) after the words, so the segmenter closes
        # the turn the way it does live instead of at the end of the recording.
        samples = speak(row.text, row.lang, tail_s=1.0)
        if row.background is not None:
            samples = over_background(samples, row.background,
                                      BACKGROUND_SNR_DB[row.background], seed=i)
        utt = utterance_in(samples, vad)
        if utt is None:
            out.append(Outcome(row, SKIP, "no speech found", 0.0))
            continue
        t = time.perf_counter()
        features = analyse(utt, aggressiveness=router.settings.audio.vad_aggressiveness)
        analysis_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        text = transcribe(utt, row.lang)
        asr_ms = (time.perf_counter() - t) * 1000
        d = router.decide(TurnSignals(text, audio=features))
        predicted = SKIP if d.action is Action.SKIP else d.tier.value
        out.append(Outcome(row, predicted, d.reason, d.latency_ms, text, asr_ms, analysis_ms))
        if progress is not None:
            progress(f"[{i + 1}/{len(rows)}] {row.lang} {predicted:12} {text!r}")
    return out


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    return {"p50": round(float(np.percentile(values, 50)), 3),
            "p99": round(float(np.percentile(values, 99)), 3)}


def confusion(outcomes: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    """expected tier → predicted tier (or "skip") → count."""
    m: dict[str, dict[str, int]] = {}
    for o in outcomes:
        row = m.setdefault(o.row.tier.value, {})
        row[o.predicted] = row.get(o.predicted, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in sorted(m.items())}


def accuracy(outcomes: Sequence[Outcome]) -> float | None:
    return round(sum(o.correct for o in outcomes) / len(outcomes), 4) if outcomes else None


def summary(outcomes: Sequence[Outcome]) -> dict:
    langs = sorted({o.row.lang for o in outcomes})
    out: dict = {
        "n": len(outcomes),
        "accuracy": accuracy(outcomes),
        "by_lang": {lang: accuracy([o for o in outcomes if o.row.lang == lang])
                    for lang in langs},
        "confusion": confusion(outcomes),
        "latency_ms": percentiles([o.decide_ms for o in outcomes]),
    }
    heavy = [o for o in outcomes if o.row.background is not None]
    if heavy:
        out["audio_heavy_accuracy"] = accuracy(heavy)
    asr = [o.asr_ms for o in outcomes if o.asr_ms is not None]
    if asr:
        out["asr_ms"] = percentiles(asr)
        out["analysis_ms"] = percentiles([o.analysis_ms or 0.0 for o in outcomes
                                          if o.analysis_ms is not None])
    return out


def misses(outcomes: Sequence[Outcome]) -> list[dict]:
    return [
        {"lang": o.row.lang, "text": o.row.text, "transcript": o.transcript,
         "expected": o.row.tier.value, "predicted": o.predicted, "reason": o.reason}
        for o in outcomes if not o.correct
    ]
