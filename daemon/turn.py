"""One conversational turn: transcript → route → model → speech, every stage timed.

Audio starts before the reply is complete: tokens go through a sentence splitter and each
sentence is synthesised and queued on the sink while the model keeps generating.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from audio.asr import Transcriber
from audio.devices import AudioSink
from audio.sentences import SentenceSplitter
from audio.tts import Speaker
from audio.vad import Utterance
from models.backend import CancelToken, Message
from models.errors import ModelError
from models.registry import ModelRegistry
from models.settings import Tier
from routing.fallback import candidates
from routing.router import Router, TurnSignals

log = logging.getLogger(__name__)


@dataclass
class TurnRecord:
    """Everything about one turn; printed by --json and written to the turn log."""

    transcript: str
    tier: str = ""
    reason: str = ""
    reply: str = ""
    model: str = ""
    language: str = ""
    source: str = "voice"
    timings: dict[str, float] = field(default_factory=dict)
    audio_s: float | None = None
    interrupted: bool = False
    error: str | None = None
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def as_dict(self) -> dict:
        return asdict(self)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


class _SpeechWorker:
    """Synthesises sentences in order on its own thread and queues them on the sink."""

    def __init__(self, speaker: Speaker, sink: AudioSink, t0: float) -> None:
        self._speaker = speaker
        self._sink = sink
        self._t0 = t0
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.first_audio_ms: float | None = None
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="tts", daemon=True)
        self._thread.start()

    def say(self, sentence: str) -> None:
        self._queue.put(sentence)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (sentence := self._queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                audio = self._speaker.synthesize(sentence)
                if len(audio):
                    self._sink.play(audio, self._speaker.sample_rate)
                    if self.first_audio_ms is None:
                        self.first_audio_ms = _ms(self._t0)
            except Exception as exc:  # keep generating text even if speech fails
                log.error("speech synthesis failed: %s", exc)
                self.error = exc


class Assistant:
    """Answers turns with the configured tiers; keeps a short conversation history."""

    def __init__(
        self,
        *,
        system_prompt: str,
        history_turns: int,
        registry: ModelRegistry,
        router: Router,
        transcriber: Transcriber | None = None,
        speaker: Speaker | None = None,
    ) -> None:
        self._system = Message("system", system_prompt)
        self._history: deque[tuple[Message, Message]] = deque(maxlen=history_turns or None)
        self._keep_history = history_turns > 0
        self.registry = registry
        self.router = router
        self.transcriber = transcriber
        self.speaker = speaker

    def forget(self) -> None:
        self._history.clear()

    def voice_turn(self, utt: Utterance, sink: AudioSink | None) -> TurnRecord:
        """Answer one utterance. Timings are measured from the moment speech ended."""
        if self.transcriber is None:
            raise RuntimeError("voice turns need a transcriber")
        t0 = utt.ended_at
        t = time.perf_counter()
        tr = self.transcriber.transcribe(utt.samples)
        rec = TurnRecord(transcript=tr.text, language=tr.language, audio_s=round(utt.duration_s, 2))
        rec.timings["asr"] = _ms(t)
        signals = TurnSignals(tr.text, audio_s=utt.duration_s, speech_ratio=utt.speech_ratio)
        return self._answer(rec, signals, sink, t0)

    def text_turn(self, text: str, sink: AudioSink | None) -> TurnRecord:
        rec = TurnRecord(transcript=text, source="text")
        return self._answer(rec, TurnSignals(text), sink, time.perf_counter())

    def _answer(
        self, rec: TurnRecord, signals: TurnSignals, sink: AudioSink | None, t0: float
    ) -> TurnRecord:
        if not rec.transcript.strip():
            rec.reason = "nothing recognisable was said"
            rec.timings["total"] = _ms(t0)
            return rec
        t = time.perf_counter()
        decision = self.router.decide(signals)
        rec.timings["route"] = _ms(t)
        rec.tier, rec.reason = decision.tier.value, decision.reason

        messages = [self._system]
        for user, bot in self._history:
            messages += [user, bot]
        user_msg = Message("user", rec.transcript)
        messages.append(user_msg)

        speech = _SpeechWorker(self.speaker, sink, t0) if sink and self.speaker else None
        splitter = SentenceSplitter()
        reply: list[str] = []
        failures: list[str] = []
        for tier in candidates(decision.tier):
            try:
                self._generate(tier, messages, rec, reply, splitter, speech, t0)
                rec.tier = tier.value
                break
            except ModelError as exc:
                log.warning("%s could not answer: %s", tier, exc)
                failures.append(f"{tier} unavailable: {exc}")
                if reply:  # part of the answer was already spoken; do not start over
                    rec.interrupted = True
                    break
        else:
            rec.error = "; ".join(failures) or "no tier could answer"
        if failures and not rec.error:
            rec.reason += f" (fell back to {rec.tier}: {failures[-1]})"
        if speech is not None:
            for s in splitter.flush():
                speech.say(s)
            speech.finish()
            sink.drain()
            if speech.first_audio_ms is not None:
                rec.timings["first_audio"] = speech.first_audio_ms
            if speech.error is not None and rec.error is None:
                rec.error = f"speech synthesis failed: {speech.error}"
        rec.reply = "".join(reply).strip()
        rec.timings["total"] = _ms(t0)
        if rec.reply and self._keep_history:
            self._history.append((user_msg, Message("assistant", rec.reply)))
        return rec

    def _generate(
        self,
        tier: Tier,
        messages: list[Message],
        rec: TurnRecord,
        reply: list[str],
        splitter: SentenceSplitter,
        speech: _SpeechWorker | None,
        t0: float,
    ) -> None:
        if not self.registry.is_loaded(tier):
            t = time.perf_counter()
            backend = self.registry.backend(tier)
            rec.timings["model_load"] = _ms(t)
        else:
            backend = self.registry.backend(tier)
        rec.model = self.registry.resolve(tier).model
        ts = self.registry.settings(tier)
        for chunk in backend.stream(
            messages, max_tokens=ts.max_tokens, temperature=ts.temperature, cancel=CancelToken()
        ):
            if not reply:
                rec.timings["ttft"] = _ms(t0)
            reply.append(chunk)
            if speech is not None:
                for sentence in splitter.feed(chunk):
                    speech.say(sentence)
