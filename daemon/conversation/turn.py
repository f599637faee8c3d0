"""One conversational turn: transcript → route → model → speech, every stage marked.

Audio starts before the reply is complete: tokens go through a sentence splitter and each
sentence is synthesised and queued on the sink while the model keeps generating. A turn can
be cancelled at any point (barge-in, or a speculative start the user talked over).

Everything a turn needs arrives as arguments (its text, media, sink, cancel token and stage
clock); the Assistant keeps nothing of one turn that another could see.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from sarai.audio.asr import Transcriber
from sarai.audio.clock import MONOTONIC
from sarai.audio.playback import AudioSink
from sarai.audio.sentences import SentenceSplitter
from sarai.audio.smart_turn import SmartTurn
from sarai.audio.text_language import TextLanguage
from sarai.audio.tts import VoiceBank
from sarai.audio.vad import Utterance
from sarai.daemon.conversation.memory import Conversation, is_forget_request
from sarai.daemon.conversation.record import TurnRecord
from sarai.daemon.conversation.speech import SpeechWorker, SpokenLimits
from sarai.daemon.conversation.stages import Stage, StageClock
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
_SORRY = {"en": "Sorry, I cannot answer right now.",
          "es": "Lo siento, ahora no puedo responder."}


def ms_since(since: float) -> float:
    """Milliseconds from `since` (a perf_counter reading) to now."""
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
        spoken: SpokenLimits | None = None,
        end_of_turn: SmartTurn | None = None,
        text_language: TextLanguage | None = None,
    ) -> None:
        self._system = system_prompt
        self.memory = memory
        self.registry = registry
        self.router = router
        self.transcriber = transcriber
        self.voices = voices
        self.language = language
        self._filler = filler or {}
        self._spoken = spoken or SpokenLimits()
        self.end_of_turn = end_of_turn  # hears whether a pause is the end of the turn
        self.text_language = text_language  # reads which language a typed turn is in

    def forget(self) -> None:
        self.memory.clear()

    def warm_up(self) -> None:
        """Run the system prompt through every loaded tier once, so the first real turn finds
        it in the model's prompt cache and only the new words need evaluating; load what
        tells a typed turn's language."""
        if self.text_language is not None:
            self.text_language.preload()
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
        """Evaluate the next turn's prompt up to the user's words (system prompt, memory and
        the note on `language`, see `_messages`) now, while nobody is talking, so the next
        reply only has to read the new question; one in another language reads its note too.
        `after`: as memory will be once that turn is remembered.

        After memory drops its oldest exchange the whole remembered conversation would
        otherwise be read again at the start of the next reply. It is read one message at a
        time, so `cancel` (a new turn) stops it within one message.
        """
        history = None if after is None else self.memory.messages_after(
            after.transcript, after.reply, interrupted=after.interrupted)
        messages = self._messages("", language or self.language, history)
        # Prefixes ending after each remembered reply, then the whole prompt: each step only
        # reads what the model's prompt cache does not hold yet.
        steps = [messages[: i + 1] for i in range(2, len(messages) - 1, 2)] + [messages]
        # Borrowed, not used: priming neither loads the model nor restarts its idle timer.
        with self.registry.borrow(tier) as backend:
            if backend is None:
                return
            try:
                for step in steps:
                    if cancel is not None and cancel.cancelled:
                        return
                    for _ in backend.stream(step, max_tokens=1, temperature=0.0,
                                            cancel=cancel):
                        pass
            except ModelError as exc:
                log.debug("priming %s failed: %s", tier, exc)

    def prime_after(self, answered: Tier, language: str | None, *, after: TurnRecord,
                    cancel: CancelToken) -> None:
        """`prime` the tier that answered, then the router's other choice for a turn (fast or
        quality) if it is resident: the router picks one per turn, and a model that has not
        read the last exchanges reads them all before its first token."""
        prefs = self.router.settings.tiers
        for tier in dict.fromkeys((answered, prefs.fast, prefs.quality)):
            if cancel.cancelled:
                return
            self.prime(tier, language, after=after, cancel=cancel)

    def remember(self, rec: TurnRecord) -> None:
        """Keep a finished turn in the conversation memory."""
        if rec.reply and rec.tier:
            self.memory.add(rec.transcript, rec.reply, interrupted=rec.interrupted)

    def transcribe(self, utt: Utterance, marks: StageClock) -> TurnRecord:
        if self.transcriber is None:
            raise RuntimeError("voice turns need a transcriber")
        marks.begin(Stage.ASR)
        tr = self.transcriber.transcribe(utt.samples)
        marks.end(Stage.ASR)
        return TurnRecord(transcript=tr.text, language=tr.language,
                          audio_s=round(utt.duration_s, 2))

    def voice_turn(self, utt: Utterance, sink: AudioSink | None,
                   cancel: CancelToken | None = None, marks: StageClock | None = None, *,
                   rec: TurnRecord | None = None,
                   on_reply: Callable[[TurnRecord], None] | None = None,
                   remember: bool = True) -> TurnRecord:
        """Answer one utterance (`rec`: already transcribed). `on_reply(rec)` is called once
        the whole reply is written, while it may still be being spoken. Without `marks`, the
        stages are timed from the end of speech and sealed into the record here."""
        own = marks is None
        marks = marks or StageClock(MONOTONIC, utt.speech_end_at)
        if own:
            marks.point(Stage.END_OF_SPEECH, utt.speech_end_at)
        rec = rec or self.transcribe(utt, marks)
        signals = TurnSignals(rec.transcript, audio_s=utt.duration_s,
                              speech_ratio=utt.speech_ratio,
                              audio=self.router.audio_features(utt.samples))
        rec = self._answer(rec, signals, rec.transcript, (), sink, cancel or CancelToken(),
                           marks, on_reply)
        return self._close(rec, marks, own, remember)

    def text_turn(self, text: str, sink: AudioSink | None, cancel: CancelToken | None = None,
                  marks: StageClock | None = None, media: Sequence[Attachment] = (),
                  language: str | None = None,
                  on_reply: Callable[[TurnRecord], None] | None = None,
                  remember: bool = True) -> TurnRecord:
        """A typed turn; `media` (audio, images, video frames) go to the model with the text
        when the tier's model takes them (a projector the RAM budget admits), else audio as
        its transcript. `text` may be empty when there is media: a recording is its own
        question, and pictures alone are asked what they show."""
        own = marks is None
        marks = marks or StageClock(MONOTONIC)
        if own:
            marks.point(Stage.REQUEST, marks.zero)
        shown = text or " ".join(f"{a.kind} from {a.source.name}" for a in media[:1])
        audio_s = sum(a.seconds or 0.0 for a in media) or None
        if language is None and text and self.text_language is not None:
            language = self.text_language.guess(text)
        rec = TurnRecord(transcript=shown, source="text" if not media else "media",
                         language=language or self.language, audio_s=audio_s)
        signals = TurnSignals(shown, audio_s=audio_s,
                              attachments=tuple(RoutedAttachment.of(a) for a in media))
        rec = self._answer(rec, signals, text, tuple(media), sink, cancel or CancelToken(),
                           marks, on_reply)
        return self._close(rec, marks, own, remember)

    def _close(self, rec: TurnRecord, marks: StageClock, own: bool,
               remember: bool) -> TurnRecord:
        if own:
            marks.point(Stage.DONE)
            rec.seal(marks)
        if remember:
            self.remember(rec)
        return rec

    def say(self, text: str, language: str, sink: AudioSink, cancel: CancelToken,
            marks: StageClock) -> None:
        """Speak a fixed sentence (an acknowledgement, an apology) as an answer."""
        if self.voices is None:
            return
        speech = SpeechWorker(self.voices.voice(language), sink, cancel, marks)
        speech.say(text)
        speech.finish()

    def _messages(self, user: str, language: str,
                  history: list[Message] | None = None) -> list[Message]:
        """System prompt, memory, then the turn: in a language other than English, a note
        saying which comes just before the user's words. It stays out of the system prompt so
        that the prompt up to it is the same in every language: a turn in another language
        than the last one reads only the note and its words (see `prime`), not the whole
        conversation again behind a changed system prompt."""
        if history is None:
            history = self.memory.messages()
        note = []
        if language != "en":
            name = LANGUAGE_NAMES.get(language, language)
            note = [Message("system", f"The user is speaking {name}: answer only in {name}.")]
        return [Message("system", self._system), *history, *note, Message("user", user)]

    def _answer(self, rec: TurnRecord, signals: TurnSignals, text: str,
                media: tuple[Attachment, ...], sink: AudioSink | None, cancel: CancelToken,
                marks: StageClock,
                on_reply: Callable[[TurnRecord], None] | None) -> TurnRecord:
        lang = rec.language or self.language
        speech = None
        if sink is not None and self.voices is not None:
            speech = SpeechWorker(self.voices.voice(lang), sink, cancel, marks, self._spoken)
        try:
            if not rec.transcript.strip():
                rec.reason = "nothing recognisable was said"
            elif is_forget_request(rec.transcript) and not media:
                self.forget()
                rec.reason = "forget request: conversation memory cleared"
                rec.reply = _FORGOTTEN.get(lang, _FORGOTTEN["en"])
                if speech is not None:
                    speech.say(rec.reply)
            else:
                self._generate_reply(rec, signals, text, media, speech, marks, cancel)
                if rec.error and not rec.reply and speech is not None:
                    speech.say(_SORRY.get(lang, _SORRY["en"]))
                if on_reply is not None and rec.reply and not cancel.cancelled:
                    on_reply(rec)
        finally:
            if speech is not None:
                speech.finish()
                if speech.limited:
                    rec.spoken = " ".join(speech.spoken)
                if speech.error is not None and rec.error is None:
                    rec.error = f"speech synthesis failed: {speech.error}"
        if cancel.cancelled:
            rec.interrupted = True
        return rec

    def _generate_reply(self, rec: TurnRecord, signals: TurnSignals, text: str,
                        media: tuple[Attachment, ...], speech: SpeechWorker | None,
                        marks: StageClock, cancel: CancelToken) -> None:
        marks.begin(Stage.ROUTE)
        decision = self.router.decide(signals)
        marks.end(Stage.ROUTE)
        if decision.action is Action.SKIP:  # e.g. a transcript that is only "[music]"
            rec.reason = decision.reason
            return
        rec.tier, rec.reason = decision.tier.value, decision.reason
        lang = rec.language or self.language
        messages = self._messages(rec.transcript, lang)
        splitter = SentenceSplitter()
        reply: list[str] = []
        failures: list[str] = []
        for tier in decision.candidates or candidates(decision.tier):
            try:
                self._stream(tier, messages, text, media, rec, reply, splitter, speech, marks,
                             cancel)
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
            rec.tier = ""
        if failures and not rec.error:
            rec.reason += f" (fell back to {rec.tier}: {failures[-1]})"
        if speech is not None and not cancel.cancelled:
            for sentence in splitter.flush():
                speech.say(sentence)
        rec.reply = "".join(reply).strip()

    def _with_media(self, tier: Tier, text: str, media: tuple[Attachment, ...],
                    messages: list[Message], rec: TurnRecord) -> list:
        """The messages for a turn with attachments (a transcript if the tier has no ear)."""
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
        return [*messages[:-1], turn.message]

    def _stream(self, tier: Tier, messages: list[Message], text: str,
                media: tuple[Attachment, ...], rec: TurnRecord, reply: list[str],
                splitter: SentenceSplitter, speech: SpeechWorker | None, marks: StageClock,
                cancel: CancelToken) -> None:
        if not self.registry.is_loaded(tier):
            filler = self._filler.get(rec.language or self.language)
            if speech is not None and filler and not speech.filler_said:
                speech.say(filler, filler=True)  # so the wait for the load is not silent
            marks.begin(Stage.MODEL_LOAD, detail=tier.value)
            backend = self.registry.backend(tier)
            marks.end(Stage.MODEL_LOAD)
        else:
            backend = self.registry.backend(tier)
        rec.model = self.registry.resolve(tier).model
        ts = self.registry.settings(tier)
        if media:
            messages = self._with_media(tier, text, media, messages, rec)
        for chunk in backend.stream(
            messages, max_tokens=ts.max_tokens, temperature=ts.temperature, cancel=cancel
        ):
            if not reply:
                marks.point(Stage.FIRST_TOKEN)
            reply.append(chunk)
            if speech is not None:
                for sentence in splitter.feed(chunk):
                    speech.say(sentence)
                speech.hold_for_first_piece()  # the next token waits for the first sound
            if cancel.cancelled:
                break
