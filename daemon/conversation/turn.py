"""One conversational turn: transcript → route → model → speech, every stage timed.

Audio starts before the reply is complete: tokens go through a sentence splitter and each
sentence is synthesised and queued on the sink while the model keeps generating. A turn can
be cancelled at any point (barge-in, or a speculative start the user talked over).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sarai.audio.asr import Transcriber
from sarai.audio.devices import AudioSink
from sarai.audio.sentences import SentenceSplitter
from sarai.audio.tts import VoiceBank
from sarai.audio.vad import Utterance
from sarai.daemon.conversation.memory import Conversation, is_forget_request
from sarai.daemon.conversation.speech import SpeechWorker
from sarai.models.attachments import Attachment
from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError
from sarai.models.multimodal import prepare_user_turn
from sarai.models.registry import ModelRegistry
from sarai.models.settings import Tier
from sarai.routing.fallback import candidates
from sarai.routing.router import Action, Router, TurnSignals
from sarai.routing.signals import Attachment as RoutedAttachment

log = logging.getLogger(__name__)

LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German",
                  "it": "Italian", "pt": "Portuguese", "ca": "Catalan"}
_FORGOTTEN = {"en": "Done, I have forgotten that.", "es": "Hecho, lo he olvidado."}


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


def ms_since(since: float) -> float:
    """Milliseconds from `since` (a perf_counter reading) to now, as turn timings give them."""
    return round((time.perf_counter() - since) * 1000, 1)


class Assistant:
    """Answers turns with the configured tiers; keeps a short conversation memory."""

    def __init__(
        self,
        *,
        system_prompt: str,
        registry: ModelRegistry,
        router: Router,
        memory: Conversation,
        transcriber: Transcriber | None = None,
        voices: VoiceBank | None = None,
        language: str = "en",
        filler: dict[str, str] | None = None,
    ) -> None:
        self._system = system_prompt
        self.memory = memory
        self.registry = registry
        self._media: tuple[str, tuple[Attachment, ...]] | None = None
        self.router = router
        self.transcriber = transcriber
        self.voices = voices
        self.language = language
        self._filler = filler or {}
        # Told (with the tier's name) before a model has to be loaded for a turn.
        self.on_loading: Callable[[str], None] | None = None

    def forget(self) -> None:
        self.memory.clear()

    def warm_up(self) -> None:
        """Run the system prompt through every loaded tier once, so the first real turn finds
        it in the model's prompt cache and only the new words need evaluating."""
        warm = [Message("system", self._system), Message("user", "Hello")]
        for tier in Tier:
            if self.registry.is_loaded(tier):
                try:
                    for _ in self.registry.backend(tier).stream(warm, max_tokens=1,
                                                                temperature=0.0):
                        pass
                except ModelError as exc:
                    log.warning("warm-up of %s failed: %s", tier, exc)

    def prime(self, tier: Tier, language: str | None = None, *,
              after: TurnRecord | None = None, cancel: CancelToken | None = None) -> None:
        """Evaluate the next turn's prompt up to the user's words (system prompt and memory)
        now, while nobody is talking, so the next reply only has to read the new question;
        `after`: as memory will be once that turn is remembered.

        After memory drops its oldest exchange the whole remembered conversation would
        otherwise be read again at the start of the next reply. It is read one message at a
        time, so `cancel` (the user started a new turn) stops it within one message.
        """
        if not self.registry.is_loaded(tier):
            return
        rec = TurnRecord(transcript="", language=language or self.language)
        messages = self._messages(rec, None if after is None else
                                  self.memory.messages_after(after.transcript, after.reply,
                                                             interrupted=after.interrupted))
        backend = self.registry.backend(tier)
        # Prefixes ending after each remembered reply, then the whole prompt: each step only
        # reads what the model's prompt cache does not hold yet.
        steps = [messages[: i + 1] for i in range(2, len(messages) - 1, 2)] + [messages]
        try:
            for step in steps:
                if cancel is not None and cancel.cancelled:
                    return
                for _ in backend.stream(step, max_tokens=1, temperature=0.0):
                    pass
        except ModelError as exc:
            log.debug("priming %s failed: %s", tier, exc)

    def remember(self, rec: TurnRecord) -> None:
        """Keep a finished turn in the conversation memory."""
        if rec.reply and rec.tier:
            self.memory.add(rec.transcript, rec.reply, interrupted=rec.interrupted)

    def transcribe(self, utt: Utterance) -> TurnRecord:
        if self.transcriber is None:
            raise RuntimeError("voice turns need a transcriber")
        t = time.perf_counter()
        tr = self.transcriber.transcribe(utt.samples)
        rec = TurnRecord(transcript=tr.text, language=tr.language, audio_s=round(utt.duration_s, 2))
        rec.timings["asr"] = ms_since(t)
        return rec

    def voice_turn(
        self,
        utt: Utterance,
        sink: AudioSink | None,
        cancel: CancelToken | None = None,
        *,
        remember: bool = True,
        transcribed: TurnRecord | None = None,
        on_reply: Callable[[TurnRecord], None] | None = None,
    ) -> TurnRecord:
        """Answer one utterance. Timings are measured from the moment speech ended.
        `on_reply(rec)` is called once the whole reply is written, while it may still be
        being spoken."""
        rec = transcribed or self.transcribe(utt)
        signals = TurnSignals(rec.transcript, audio_s=utt.duration_s,
                              speech_ratio=utt.speech_ratio,
                              audio=self.router.audio_features(utt.samples))
        rec = self._answer(rec, signals, sink, utt.speech_end_at, cancel or CancelToken(),
                           on_reply)
        if remember:
            self.remember(rec)
        return rec

    def text_turn(
        self, text: str, sink: AudioSink | None, cancel: CancelToken | None = None,
        media: Sequence[Attachment] = (),
    ) -> TurnRecord:
        """A typed turn; `media` (audio, images, video frames) go to the model with the text
        when the tier's model takes them (a projector the RAM budget admits), else audio as
        its transcript. `text` may be empty when there is media: a recording is its own
        question, and pictures alone are asked what they show."""
        shown = text or " ".join(f"{a.kind} from {a.source.name}" for a in media[:1])
        audio_s = sum(a.seconds or 0.0 for a in media) or None
        rec = TurnRecord(transcript=shown, source="text" if not media else "media",
                         language=self.language, audio_s=audio_s)
        self._media = (text, tuple(media))
        try:
            signals = TurnSignals(shown, audio_s=audio_s,
                                  attachments=tuple(RoutedAttachment.of(a) for a in media))
            rec = self._answer(rec, signals, sink,
                               time.perf_counter(), cancel or CancelToken())
        finally:
            self._media = None
        self.remember(rec)
        return rec

    def _messages(self, rec: TurnRecord, history: list[Message] | None = None) -> list[Message]:
        system = self._system
        lang = rec.language or self.language
        if lang != "en":
            name = LANGUAGE_NAMES.get(lang, lang)
            system += f" The user is speaking {name}: answer only in {name}."
        if history is None:
            history = self.memory.messages()
        return [Message("system", system), *history, Message("user", rec.transcript)]

    def _answer(
        self,
        rec: TurnRecord,
        signals: TurnSignals,
        sink: AudioSink | None,
        t0: float,
        cancel: CancelToken,
        on_reply: Callable[[TurnRecord], None] | None = None,
    ) -> TurnRecord:
        lang = rec.language or self.language
        speech = None
        if sink is not None and self.voices is not None:
            speech = SpeechWorker(self.voices.voice(lang), sink, t0, cancel)
        try:
            if not rec.transcript.strip():
                rec.reason = "nothing recognisable was said"
            elif is_forget_request(rec.transcript):
                self.forget()
                rec.reason = "forget request: conversation memory cleared"
                rec.reply = _FORGOTTEN.get(lang, _FORGOTTEN["en"])
                if speech is not None:
                    speech.say(rec.reply)
            else:
                self._generate_reply(rec, signals, speech, t0, cancel)
                if on_reply is not None and rec.reply and not cancel.cancelled:
                    on_reply(rec)
        finally:
            if speech is not None:
                speech.finish()
                if not cancel.cancelled:
                    sink.drain()
                if speech.first_audio_ms is not None:
                    rec.timings["first_audio"] = speech.first_audio_ms
                if speech.error is not None and rec.error is None:
                    rec.error = f"speech synthesis failed: {speech.error}"
        if cancel.cancelled:
            rec.interrupted = True
        rec.timings["total"] = ms_since(t0)
        return rec

    def _generate_reply(
        self,
        rec: TurnRecord,
        signals: TurnSignals,
        speech: SpeechWorker | None,
        t0: float,
        cancel: CancelToken,
    ) -> None:
        t = time.perf_counter()
        decision = self.router.decide(signals)
        rec.timings["route"] = ms_since(t)
        if decision.action is Action.SKIP:  # e.g. a transcript that is only "[music]"
            rec.reason = decision.reason
            return
        rec.tier, rec.reason = decision.tier.value, decision.reason
        messages = self._messages(rec)
        splitter = SentenceSplitter()
        reply: list[str] = []
        failures: list[str] = []
        for tier in decision.candidates or candidates(decision.tier):
            try:
                self._stream(tier, messages, rec, reply, splitter, speech, t0, cancel)
                rec.tier = tier.value
                break
            except ModelError as exc:
                log.warning("%s could not answer: %s", tier, exc)
                if reply:
                    # It failed mid-reply: the next tier answers the same turn afresh; what
                    # was already said stays said.
                    failures.append(f"{tier} failed mid-reply: {exc}")
                    reply.clear()
                    splitter = SentenceSplitter()
                else:
                    failures.append(f"{tier} unavailable: {exc}")
        else:
            rec.error = "; ".join(failures) or "no tier could answer"
        if failures and not rec.error:
            rec.reason += f" (fell back to {rec.tier}: {failures[-1]})"
        if speech is not None and not cancel.cancelled:
            for sentence in splitter.flush():
                speech.say(sentence)
        rec.reply = "".join(reply).strip()

    def _with_media(self, tier: Tier, backend, messages: list, rec: TurnRecord):
        """The backend and messages for a turn with attachments (transcript if it has no ear)."""
        text, media = self._media
        support = self.registry.media(tier)
        asr = self.transcriber
        turn = prepare_user_turn(
            text, media, accepts=support.kinds, tier=tier.value, why_not=support.why_not,
            transcribe=(lambda s: asr.transcribe(s).text) if asr is not None else None,
        )
        if turn.note and turn.note not in rec.reason:
            rec.reason += f" ({turn.note})"
        if not text and not getattr(turn.message, "media", None):
            rec.transcript = turn.message.content  # what was heard, since that is what went
        return backend, [*messages[:-1], turn.message]

    def _stream(
        self,
        tier: Tier,
        messages: list[Message],
        rec: TurnRecord,
        reply: list[str],
        splitter: SentenceSplitter,
        speech: SpeechWorker | None,
        t0: float,
        cancel: CancelToken,
    ) -> None:
        if not self.registry.is_loaded(tier):
            filler = self._filler.get(rec.language or self.language)
            if speech is not None and filler:
                speech.say(filler)  # so the wait for the load is not silent
            if self.on_loading is not None:
                self.on_loading(tier.value)
            t = time.perf_counter()
            backend = self.registry.backend(tier)
            rec.timings["model_load"] = ms_since(t)
        else:
            backend = self.registry.backend(tier)
        rec.model = self.registry.resolve(tier).model
        ts = self.registry.settings(tier)
        if self._media is not None:
            backend, messages = self._with_media(tier, backend, messages, rec)
        for chunk in backend.stream(
            messages, max_tokens=ts.max_tokens, temperature=ts.temperature, cancel=cancel
        ):
            if not reply:
                rec.timings["ttft"] = ms_since(t0)
            reply.append(chunk)
            if speech is not None:
                for sentence in splitter.feed(chunk):
                    speech.say(sentence)
            if cancel.cancelled:
                break
