"""Deciding which tier answers a turn, with a reason a person can read.

The rules, first match wins:
 1. nothing but noise (or nothing at all)  → skip the turn
 2. an explicit "answer quickly"            → the fast tier
 3. an explicit "think it through"          → the quality tier
 4. an attachment (image, audio, video)     → the quality tier, multimodal tiers only
 5. a question about the sound, or loud
    music/noise around the voice            → the quality tier
 6. empathetic/social and short             → the fast tier
 7. weighted need (complexity, length,
    duration) at or above the threshold     → the quality tier
 8. otherwise                               → the fast tier
Then the tier is moved down the fallback ladder past tiers that cannot serve right now.
No language model runs here: every signal costs microseconds to a millisecond or two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np

from sarai.models.settings import Tier
from sarai.routing import fallback
from sarai.routing.audio_features import AudioFeatures, analyse
from sarai.routing.classifier import TextScorer, load_or_train
from sarai.routing.settings import RoutingSettings
from sarai.routing.signals import Attachment, AttachmentKind, TurnSignals
from sarai.routing.text import PhraseSet, is_noise_only, normalise, strip_annotations
from sarai.routing.warmup import WarmupAdvice, WarmupPredictor

__all__ = ["Action", "Attachment", "AttachmentKind", "Decision", "Router", "Rule",
           "TurnSignals", "WarmupAdvice"]

Availability = Callable[[Tier], bool]  # can this tier serve a turn right now?


class Rule(StrEnum):
    NOISE = "noise"
    EXPLICIT_FAST = "explicit_fast"
    EXPLICIT_THINK = "explicit_think"
    ATTACHMENT = "attachment"
    SOUND = "sound"
    AUDIO = "audio"
    SOCIAL = "social"
    NEED = "need"
    DEFAULT = "default"


class Action(StrEnum):
    ANSWER = "answer"
    SKIP = "skip"  # nothing to answer (empty or noise-only transcript)


@dataclass(frozen=True)
class Decision:
    tier: Tier
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    rule: Rule = Rule.DEFAULT
    action: Action = Action.ANSWER
    candidates: tuple[Tier, ...] = ()  # tiers to try in order, `tier` first
    wanted: Tier | None = None  # what the policy chose before availability moved it

    def as_dict(self) -> dict:
        return {"tier": self.tier.value, "reason": self.reason, "scores": self.scores,
                "rule": self.rule.value, "action": self.action.value,
                "candidates": [t.value for t in self.candidates]}


class Router:
    """Picks a tier per turn from the words, the sound, the attachments and the system state.

    `scorer` is the empathy/complexity classifier (trained on first use when not given,
    cached in `cache_dir` if set). `availability`, when given, says whether a tier can serve
    right now (resident, or loadable within the RAM budget, and not failing); it is asked only
    for turns whose signals do not already carry that set, and only down the ladder as far as
    the first tier that can. `takes_media`, when given, says whether a tier can take
    attachments directly (a model with a projector); without it every tier listed in
    `routing.tiers.multimodal` is taken to.
    """

    def __init__(self, settings: RoutingSettings, *, scorer: TextScorer | None = None,
                 availability: Availability | None = None,
                 takes_media: Availability | None = None, cache_dir: Path | None = None) -> None:
        self._s = settings
        self.scorer = scorer or load_or_train(cache_dir)
        self._availability = availability
        self._takes_media = takes_media
        self._fast = PhraseSet(settings.phrases.fast)
        self._think = PhraseSet(settings.phrases.think)
        self._sound = PhraseSet(settings.phrases.sound)
        self._warmup = WarmupPredictor(settings, self.scorer)

    @property
    def settings(self) -> RoutingSettings:
        return self._s

    def decide(self, signals: TurnSignals) -> Decision:
        t0 = time.perf_counter()
        decision = self._decide(signals)
        return replace(decision, latency_ms=round((time.perf_counter() - t0) * 1000, 3))

    def audio_features(self, samples: np.ndarray) -> AudioFeatures:
        """The analysis `TurnSignals.audio` expects, for one utterance of 16 kHz int16 audio."""
        return analyse(samples, aggressiveness=self._s.audio.vad_aggressiveness)

    def warmup(self, partial_text: str, speech_s: float,
               audio: AudioFeatures | None = None) -> WarmupAdvice:
        """Whether to start loading the quality tier while the user is still speaking.

        The voice loop calls this with the partial transcript and the seconds of speech so
        far; when `warm` is true it asks the residency manager to load `tier`.
        """
        return self._warmup.advise(partial_text, speech_s, audio)

    # --- the rules --------------------------------------------------------------------

    def _decide(self, sig: TurnSignals) -> Decision:
        s = self._s
        words_only = strip_annotations(sig.text)
        text = normalise(words_only)
        n_words = len(text.split())
        scores: dict[str, float] = {"words": float(n_words)}
        if sig.audio is not None:
            scores.update(sig.audio.as_scores())
        elif sig.audio_s is not None:
            scores["audio_s"] = round(sig.audio_s, 2)
            if sig.speech_ratio is not None:
                scores["speech_ratio"] = round(sig.speech_ratio, 2)
        if sig.attachments:
            scores["attachments"] = float(len(sig.attachments))

        if not sig.attachments and is_noise_only(sig.text):
            why = (f"the transcript is only noise ({sig.text.strip()!r})" if sig.text.strip()
                   else "the transcript is empty")
            return Decision(s.tiers.fast, f"{why}: nothing to answer", scores,
                            rule=Rule.NOISE, action=Action.SKIP, candidates=(),
                            wanted=s.tiers.fast)

        ts = self.scorer.score(words_only)
        scores["empathy"] = round(ts.empathy, 2)
        scores["complexity"] = round(ts.complexity, 2)
        only, media_note = self._media_tiers(sig)

        if phrase := self._fast.first(text):
            return self._finish(sig, s.tiers.fast, Rule.EXPLICIT_FAST,
                                f"asked for a quick answer ('{phrase}')", scores, only)
        if phrase := self._think.first(text):
            return self._finish(sig, s.tiers.quality, Rule.EXPLICIT_THINK,
                                f"asked to think it through ('{phrase}')", scores, only)
        if sig.attachments:
            kinds = sorted({a.kind.value for a in sig.attachments})
            names = ", ".join(dict.fromkeys(a.name for a in sig.attachments))
            return self._finish(sig, only[0] if only else s.tiers.multimodal[0],
                                Rule.ATTACHMENT,
                                f"{' and '.join(kinds)} attached ({names}){media_note}",
                                scores, only)
        if phrase := self._sound.first(text):
            return self._finish(sig, s.tiers.quality, Rule.SOUND,
                                f"asks about the sound ('{phrase}')", scores, only)
        a = sig.audio
        if (a is not None and a.background_dbfs >= s.audio.heavy_background_dbfs
                and a.snr_db < s.audio.heavy_max_snr_db):
            why = (f"background {a.background_kind} at {a.background_dbfs:.0f} dBFS, "
                   f"voice only {a.snr_db:.0f} dB above it")
            return self._finish(sig, s.tiers.quality, Rule.AUDIO, why, scores, only)

        evidence = ", ".join(f"'{w}'" for w in ts.evidence["complexity"])
        cx = f"complexity {ts.complexity:.2f}" + (f" ({evidence})" if evidence else "")
        if (ts.empathy >= s.thresholds.empathy and ts.complexity < s.thresholds.complexity
                and n_words <= s.short_max_words):
            return self._finish(sig, s.tiers.fast, Rule.SOCIAL,
                                f"empathy {ts.empathy:.2f}, {n_words} words", scores, only)

        w = s.weights
        length = min(1.0, max(0, n_words - s.short_max_words) / s.short_max_words)
        dur = sig.duration_s or 0.0
        duration = min(1.0, max(0.0, dur - s.long_audio_s) / s.long_audio_s)
        need = w.complexity * ts.complexity + w.length * length + w.duration * duration
        scores["need"] = round(need, 2)
        parts = [cx, f"{n_words} words" + (" (long)" if length > 0 else "")]
        if duration > 0:
            parts.append(f"{dur:.1f} s of speech (long)")
        if need >= s.thresholds.quality:
            return self._finish(sig, s.tiers.quality, Rule.NEED, ", ".join(parts), scores, only)
        return self._finish(sig, s.tiers.fast, Rule.DEFAULT, ", ".join(parts), scores, only)

    def _media_tiers(self, sig: TurnSignals) -> tuple[tuple[Tier, ...] | None, str]:
        """The tiers an attachment restricts the turn to, best first, and a note.

        When no configured multimodal tier can take attachments directly, the turn is not
        restricted: the tiers then get what they can use (a transcript of an audio clip).
        """
        if not sig.attachments:
            return None, ""
        ok = self._takes_media
        capable = tuple(t for t in self._s.tiers.multimodal if ok is None or ok(t))
        if capable:
            return capable, ""
        return None, "; no tier here takes attachments directly"

    def _finish(self, sig: TurnSignals, wanted: Tier, rule: Rule, why: str,
                scores: dict[str, float], only: tuple[Tier, ...] | None) -> Decision:
        if only is not None and wanted not in only:
            wanted = only[0]
        can_serve = (sig.available.__contains__ if sig.available is not None
                     else self._availability)
        p = fallback.plan(wanted, can_serve=can_serve, only=only)
        reason = f"{why} → {wanted}"
        if p.passed_over:
            skipped = ", ".join(str(t) for t in p.passed_over)
            reason += f"; {skipped} cannot serve now → {p.tier}"
        return Decision(p.tier, reason, scores, rule=rule, candidates=p.candidates,
                        wanted=wanted)

