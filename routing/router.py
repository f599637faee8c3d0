"""Deciding which tier answers a turn, with a reason a person can read."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from models.settings import Tier
from routing.settings import RoutingSettings

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class TurnSignals:
    """What the router knows about a turn; the audio fields are absent for typed text."""

    text: str
    audio_s: float | None = None
    speech_ratio: float | None = None


@dataclass(frozen=True)
class Decision:
    tier: Tier
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0


class Router:
    """Short → omni_fast; long or complex → omni_quality. Every decision says why."""

    def __init__(self, settings: RoutingSettings) -> None:
        self._s = settings
        self._markers = [
            (m, re.compile(r"(?<!\w)" + re.escape(m.lower()) + r"(?!\w)"))
            for m in settings.complex_markers
        ]

    def decide(self, signals: TurnSignals) -> Decision:
        t0 = time.perf_counter()
        text = signals.text.lower()
        words = len(_WORD.findall(text))
        hits = [m for m, rx in self._markers if rx.search(text)]
        scores = {"words": float(words), "complex_markers": float(len(hits))}
        if signals.audio_s is not None:
            scores["audio_s"] = round(signals.audio_s, 2)
        if hits:
            tier, reason = Tier.OMNI_QUALITY, f"complex request ('{hits[0]}') → omni_quality"
        elif words > self._s.short_max_words:
            tier = Tier.OMNI_QUALITY
            reason = f"{words} words > {self._s.short_max_words} → omni_quality"
        elif signals.audio_s is not None and signals.audio_s > self._s.long_audio_s:
            tier = Tier.OMNI_QUALITY
            limit = self._s.long_audio_s
            reason = f"{signals.audio_s:.1f} s of speech > {limit:g} s → omni_quality"
        else:
            tier, reason = Tier.OMNI_FAST, f"short turn, {words} words → omni_fast"
        return Decision(tier, reason, scores, (time.perf_counter() - t0) * 1000)
