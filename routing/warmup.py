"""Predictive warm-up: while the user is still speaking, decide whether the quality tier is
likely to be needed, so the voice loop can ask for it to be loaded before the turn ends.

Loading Omni-7B takes seconds; starting while the user talks hides most of that. A wrong
guess costs memory for one TTL period, so the hints are the cheap, strong ones: the turn is
already long, the words so far already look complex, an explicit "think it through", a
question about the sound, or loud sound around the voice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sarai.models.settings import Tier
from sarai.routing.audio_features import AudioFeatures
from sarai.routing.classifier import TextScorer
from sarai.routing.settings import RoutingSettings
from sarai.routing.text import PhraseSet, normalise


@dataclass(frozen=True)
class WarmupAdvice:
    warm: bool
    tier: Tier  # the tier to warm (the configured quality tier)
    reason: str


class WarmupPredictor:
    def __init__(self, settings: RoutingSettings, scorer: TextScorer) -> None:
        self._s = settings
        self._scorer = scorer
        self._fast = PhraseSet(settings.phrases.fast)
        self._think = PhraseSet(settings.phrases.think)
        self._sound = PhraseSet(settings.phrases.sound)

    def advise(self, partial_text: str, speech_s: float,
               audio: AudioFeatures | None = None) -> WarmupAdvice:
        """Call with the partial transcript and the seconds of speech heard so far."""
        s, w = self._s, self._s.warmup
        tier = s.tiers.quality
        if not w.enabled:
            return WarmupAdvice(False, tier, "warm-up is turned off")
        text = normalise(partial_text)
        if phrase := self._fast.first(text):
            return WarmupAdvice(False, tier, f"asked for a quick answer ('{phrase}')")
        if phrase := self._think.first(text):
            return WarmupAdvice(True, tier, f"asked to think it through ('{phrase}')")
        if phrase := self._sound.first(text):
            return WarmupAdvice(True, tier, f"asks about the sound ('{phrase}')")
        if (audio is not None and audio.background_dbfs >= s.audio.heavy_background_dbfs
                and audio.snr_db < s.audio.heavy_max_snr_db):
            return WarmupAdvice(True, tier, f"loud background {audio.background_kind}")
        if speech_s >= w.after_speech_s:
            return WarmupAdvice(True, tier, f"{speech_s:.1f} s of speech so far")
        n = len(text.split())
        if n >= w.min_words:
            cx = self._scorer.score(partial_text).complexity
            if cx >= w.complexity:
                return WarmupAdvice(True, tier, f"complexity {cx:.2f} after {n} words")
            return WarmupAdvice(False, tier, f"complexity {cx:.2f} after {n} words")
        return WarmupAdvice(False, tier, f"only {n} words so far")
