"""The conversation core: one queue for every turn, one owner of its state.

Everything that can happen to a conversation arrives here as a message: what the microphone's
front end heard (a pause, the end likely, the user going on, the end of a turn, a barge-in),
a typed request, a mode change, and what the runner and the speaker report back about each
turn. One thread — the core's — takes them in order and alone changes turns, the mode, the
state, the history and the memory's bookkeeping; everybody else reads `view`, an immutable
snapshot.

Interruptions (barge-in, mute, quit) travel in a lane of their own that is always emptied
first, so they overtake work that is queued, as system frames do in a frame pipeline.

The heavy work (transcribing, generating, synthesising) happens on the runner, one job at a
time; the core never waits for it. `pump()` processes messages on the caller's thread, which
is how the device-free harness runs it; `start()` gives the core a thread of its own.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from sarai.audio.clock import MONOTONIC, Clock
from sarai.audio.playback import AudioSink, HeldSink, Output
from sarai.audio.settings import VadSettings
from sarai.audio.vad import Utterance
from sarai.audio.wav_output import WavOutput
from sarai.daemon.config import ListenSettings
from sarai.daemon.conversation import messages as m
from sarai.daemon.conversation.endpoint import looks_complete
from sarai.daemon.conversation.own_words import said_again
from sarai.daemon.conversation.phases import Turn, TurnPhase
from sarai.daemon.conversation.record import TurnRecord
from sarai.daemon.conversation.requests import Origin, RequestError, Source, TurnRequest
from sarai.daemon.conversation.runner import InlineRunner, Priority, Runner
from sarai.daemon.conversation.stages import Stage, StageClock
from sarai.daemon.conversation.turn import Assistant
from sarai.daemon.conversation.wake import match_wake
from sarai.daemon.events import Event, EventKind, ListenMode, State
from sarai.models import memory
from sarai.models.backend import CancelToken
from sarai.models.errors import ModelError
from sarai.models.settings import Tier

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
_WAKE_ACK = {"en": "Yes?", "es": "¿Sí?"}
_TURN_ERROR_S = 5.0  # how long a turn that failed shows as the error state


@dataclass(frozen=True)
class View:
    """The core's state as others may read it (replaced whole, never changed)."""

    state: State = State.IDLE
    message: str | None = None
    mode: ListenMode = ListenMode.ALWAYS
    pushing: bool = False
    push_releases: int = 0  # counts releases, so a quick tap between two frames is seen
    answering: int | None = None  # a committed turn whose answer is being written or heard
    speculative: int | None = None  # a turn being answered at a pause, audio held
    speculative_complete: bool = False  # …whose transcript reads as a finished sentence
    committed: int = 0  # the latest turn committed: its utterance is being answered
    turns: int = 0  # turns answered
    stopping: bool = False


class ConversationCore:
    """See the module comment. Thread-safe entry points: `post`, `ask`, `set_mode`, `push`,
    `forget`, `interrupt`, `attach_output`, `device_error`, `stop`; `view` and `history()`
    to read."""

    def __init__(self, assistant: Assistant, listen: ListenSettings, emit: Emit, *,
                 clock: Clock = MONOTONIC, inline: bool | InlineRunner = False,
                 mode: ListenMode | None = None, history_size: int = 50,
                 vad: VadSettings | None = None) -> None:
        self.assistant = assistant
        self._listen = listen
        self._vad = vad  # how an audio attachment is checked for speech (default settings)
        self._emit = emit
        self.clock = clock
        self._runner: Runner | InlineRunner = (
            inline if isinstance(inline, InlineRunner)
            else InlineRunner() if inline else Runner())
        # The end-of-turn model judges a pause on a small worker of its own, beside the
        # speculative transcription on the runner, so neither waits for the other; at a
        # lower CPU priority, so that on a busy machine the transcript, which the answer
        # waits for, comes first (its verdict is needed only by `complete_silence_ms`).
        # On two cores English transcription took 110-200 ms instead of 150-240 (median
        # 142 vs 182 ms, one voice bench run each; README, Hands-free).
        self._judge: Runner | InlineRunner | None = None
        if assistant.end_of_turn is not None:
            self._judge = self._runner if inline else Runner(name="end-of-turn", nice=10)
        self._inline = bool(inline)
        self._system: deque[m.Message] = deque()  # interruptions: always taken first
        self._data: deque[m.Message] = deque()
        self._wake = threading.Condition()
        self._ids = itertools.count(1)
        self._turns: dict[int, Turn] = {}  # turns not yet final, by id
        self._history: deque[TurnRecord] = deque(maxlen=history_size)
        self._answered_from: float | None = None  # start of the utterance last committed
        self._history_view: tuple[TurnRecord, ...] = ()  # what other threads read
        self._output: Output | None = None
        self._loading: str | bool = False  # a turn's model is loading (its tier)
        self._asked_load: str | None = None  # a load someone asked for, outside turns
        self._hearing = False
        self._mic_live = False  # listening means the microphone's audio flows
        self._device_error: str | None = None
        self._turn_error: str | None = None  # why the last turn had no answer
        self._turn_error_until = 0.0
        self._follow_up_until = 0.0
        self._said = ""  # the last answer heard on the speaker (its spoken words)
        self._prime_cancel: CancelToken | None = None
        start = mode or listen.mode
        self._unmuted = ListenMode.ALWAYS if start is ListenMode.MUTED else start
        self._view = View(mode=start)
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # --- reading ----------------------------------------------------------------------

    @property
    def view(self) -> View:
        return self._view

    @property
    def state(self) -> State:
        return self._view.state

    @property
    def mode(self) -> ListenMode:
        return self._view.mode

    @property
    def unmuted_mode(self) -> ListenMode:
        return self._unmuted

    def history(self) -> list[TurnRecord]:
        return list(self._history_view)

    @property
    def busy(self) -> bool:
        """Some turn is not finished yet (for callers that pump the core themselves)."""
        return bool(self._turns)

    # --- posting (any thread) ---------------------------------------------------------

    def post(self, msg: m.Message) -> None:
        with self._wake:
            (self._system if msg.system else self._data).append(msg)
            self._wake.notify()

    def ask(self, request: TurnRequest) -> Future[TurnRecord]:
        """A typed turn; the future gets its record, or RequestError saying why not."""
        fut: Future[TurnRecord] = Future()
        if self._stopped.is_set():
            fut.set_exception(RequestError("SARAi is shutting down; the request was not "
                                           "answered"))
        else:
            self.post(m.Ask(request, fut))
        return fut

    def set_mode(self, mode: ListenMode) -> None:
        self.post(m.SetMode(mode))

    def push(self, active: bool) -> None:
        self.post(m.Push(active))

    def forget(self) -> Future[bool]:
        fut: Future[bool] = Future()
        self.post(m.Forget(fut))
        return fut

    def interrupt(self, reason: str = "interrupted") -> None:
        self.post(m.Interrupt(reason))

    def attach_output(self, output: Output | None) -> None:
        self.post(m.OutputChanged(output))

    def device_error(self, message: str | None) -> None:
        self.post(m.DeviceError(message))

    def loading(self, what: str | None) -> None:
        """A model is being loaded outside any turn (`sarai models load`); None: done."""
        self.post(m.Loading(what))

    def warm_up(self) -> Future[None]:
        """Read the system prompt into every loaded model, on the runner (a turn that comes
        meanwhile goes first); the future is done once it has."""
        done: Future[None] = Future()

        def job() -> None:
            try:
                self.assistant.warm_up()
            finally:
                done.set_result(None)

        self._runner.submit(job, Priority.BACKGROUND)
        return done

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        """Take messages on a thread of the core's own until `stop()`."""
        self._thread = threading.Thread(target=self._run, name="conversation", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Cut the answer in progress, refuse what is queued, and end the core's thread and
        the runner; False if the runner was still busy when `timeout` ran out."""
        self.post(m.Stop())
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self.pump()
        done = self._runner.close(timeout)
        if self._judge is not None and self._judge is not self._runner:
            self._judge.close(timeout)
        return done

    def _run(self) -> None:
        while not self._stopped.is_set():
            msg = self._next(timeout=1.0)
            if msg is not None:
                self._handle(msg)
            else:
                self._refresh()  # states that pass with time

    def _next(self, timeout: float | None) -> m.Message | None:
        with self._wake:
            if not self._system and not self._data and timeout:
                self._wake.wait(timeout)
            if self._system:
                return self._system.popleft()
            if self._data:
                return self._data.popleft()
            return None

    def pump(self) -> int:
        """Process every pending message, and (inline) every pending job, on this thread;
        how many messages were handled."""
        handled = 0
        while True:
            msg = self._next(timeout=None)
            if msg is not None:
                self._handle(msg)
                handled += 1
                continue
            if not (self._inline and self._runner.run_pending()):
                self._refresh()  # states that pass with time
                return handled

    # --- handling (the core's thread only) --------------------------------------------

    def _handle(self, msg: m.Message) -> None:
        try:
            handler = getattr(self, f"_on_{type(msg).__name__}")
            handler(msg)
        except Exception:  # a bad message must never stop the conversation
            log.exception("conversation core: handling %s failed", type(msg).__name__)
        self._refresh()

    # Front end -------------------------------------------------------------------------

    def _on_MicLive(self, msg: m.MicLive) -> None:
        self._mic_live = msg.live

    def _on_SpeechState(self, msg: m.SpeechState) -> None:
        self._hearing = msg.speaking

    def _on_Paused(self, msg: m.Paused) -> None:
        self._maybe_warm_up(msg.utterance)
        if self._speculative() is None and self._talking() is None and self._listening():
            self._start_voice_turn(msg.utterance, speculative=True,
                                   near_answer=msg.near_answer)

    def _on_Resumed(self, msg: m.Resumed) -> None:  # noqa: ARG002
        turn = self._speculative()
        if turn is not None:
            self._drop(turn, "the user went on after the pause")

    def _on_EndLikely(self, msg: m.EndLikely) -> None:
        turn = self._turns.get(msg.turn)
        if turn is None or not turn.speculative or turn.cancel.cancelled:
            return
        turn.end_likely = True
        if not self._end_if_answered(turn):
            log.debug("turn %d: the end is likely, %.0f ms after the last word; it waits for"
                      " its answer", turn.id, turn.marks.elapsed_ms())

    def _on_AnswerReady(self, msg: m.AnswerReady) -> None:
        turn = self._turns.get(msg.turn)
        if turn is not None:
            self._end_if_answered(turn)

    def _on_Ended(self, msg: m.Ended) -> None:
        if not self._listening():
            return
        turn = self._speculative()
        if turn is not None and not turn.cancel.cancelled:
            self._commit(turn)
            return
        if msg.utterance.start_s == self._answered_from:
            return  # its turn already ended early, when its answer was ready
        self._start_voice_turn(msg.utterance, speculative=False, near_answer=msg.near_answer)

    def _end_if_answered(self, turn: Turn) -> bool:
        """A speculative turn whose end is likely ends once its answer has something to say
        (or is written without a sound); whether it did."""
        ready = turn.held is None or turn.held.waiting > 0 or turn.written is not None
        if not (turn.speculative and turn.end_likely and ready and not turn.cancel.cancelled):
            return False
        self._commit(turn)
        return True

    def _commit(self, turn: Turn) -> None:
        """The speculative start was right: the turn is the user's, its held audio plays now.
        Until this moment a user who goes on loses nothing: nothing was heard, and the
        utterance carries on as one (see EndLikely)."""
        self._advance(turn, TurnPhase.ANSWERING)
        utt = turn.request.utterance
        self._answered_from = utt.start_s if utt is not None else None
        if turn.held is not None:
            log.debug("turn %d: the end, %.0f ms after the last word; %d pieces of its"
                      " answer ready", turn.id, turn.marks.elapsed_ms(), turn.held.waiting)
            turn.held.release()
        if turn.written is not None:
            self._on_written(turn)

    def _on_BargeIn(self, msg: m.BargeIn) -> None:
        turn = self._turns.get(msg.turn)
        if turn is None or not turn.committed:
            return
        log.info("barge-in: answer interrupted")
        self._interrupt_answers(barge_onset=msg.onset)

    # Clients ---------------------------------------------------------------------------

    def _on_Ask(self, msg: m.Ask) -> None:
        req = msg.request
        try:
            self._check(req)
        except RequestError as exc:
            msg.future.set_exception(exc)
            return
        turn = self._new_turn(req, zero=self.clock.now(), future=msg.future)
        self._runner.submit(lambda: self._run_turn(turn), Priority.TURN)
        self._cancel_priming()

    def _check(self, req: TurnRequest) -> None:
        if self._view.stopping:
            raise RequestError("SARAi is shutting down; the request was not answered")
        if req.speak and req.output is None:
            if self._view.mode is ListenMode.MUTED:
                raise RequestError("SARAi is muted: unmute it ('sarai unmute') to hear the "
                                   "answer, or ask with --no-speak")
            if self._output is None:
                raise RequestError("no speaker is available right now"
                                   + (f" ({self._device_error})" if self._device_error else "")
                                   + "; ask with --no-speak for a printed answer")
        if req.media:
            from sarai.models.attachments import check

            for ref in req.media:
                try:
                    check(ref.path, ref.kind)  # headers only: is it what it says, within limits
                except ModelError as exc:
                    raise RequestError(str(exc)) from exc

    def _on_SetMode(self, msg: m.SetMode) -> None:
        if msg.mode is not ListenMode.MUTED:
            self._unmuted = msg.mode
        self._view = replace(self._view, mode=msg.mode)
        self._emit(Event(EventKind.MODE, {"mode": msg.mode.value}))
        if msg.mode is ListenMode.MUTED:
            turn = self._speculative()
            if turn is not None:
                self._drop(turn, "listening was muted")
            self._interrupt_answers()  # muted means quiet too

    def _on_Push(self, msg: m.Push) -> None:
        v = self._view
        releases = v.push_releases + (1 if v.pushing and not msg.active else 0)
        self._view = replace(v, pushing=msg.active, push_releases=releases)
        if msg.active:
            self._interrupt_answers()  # pressing to talk silences SARAi, as talking over it

    def _on_Forget(self, msg: m.Forget) -> None:
        self.assistant.forget()
        self._history.clear()
        self._history_view = ()
        msg.future.set_result(True)

    def _on_Interrupt(self, msg: m.Interrupt) -> None:
        log.info("answer interrupted: %s", msg.reason)
        self._interrupt_answers()

    def _on_OutputChanged(self, msg: m.OutputChanged) -> None:
        self._output = msg.output

    def _on_Loading(self, msg: m.Loading) -> None:
        self._asked_load = msg.what

    def _on_DeviceError(self, msg: m.DeviceError) -> None:
        self._device_error = msg.message

    def _on_Stop(self, msg: m.Stop) -> None:  # noqa: ARG002
        self._view = replace(self._view, stopping=True)
        for turn in list(self._turns.values()):
            turn.cancel.cancel()
            if turn.held is not None:
                turn.held.discard()
            fut = turn.future
            if fut is not None and not fut.done():
                fut.set_exception(RequestError(
                    "SARAi is shutting down; the request was not answered"
                    if turn.phase is TurnPhase.HEARD else
                    "SARAi is shutting down; the answer was cut short"))
        self._cancel_priming()
        if self._output is not None:
            self._output.stop()
        self._stopped.set()

    # Runner and speaker ----------------------------------------------------------------

    def _on_Started(self, msg: m.Started) -> None:
        turn = self._turns.get(msg.turn)
        if turn is not None and turn.phase is TurnPhase.HEARD:
            self._advance(turn, TurnPhase.ANSWERING)

    def _on_StageReached(self, msg: m.StageReached) -> None:
        if msg.stage is Stage.MODEL_LOAD:
            self._loading = msg.detail or "a model"
        elif msg.stage in (Stage.FIRST_TOKEN, Stage.DONE):
            self._loading = False

    def _on_Transcribed(self, msg: m.Transcribed) -> None:
        turn = self._turns.get(msg.turn)
        if turn is None:
            return
        if turn.near_answer and said_again(msg.text, self._said):
            log.info("ignored %r: SARAi's own last words came back into the microphone",
                     msg.text)
            self._drop(turn, "it was SARAi's own voice")
            return
        turn.text_complete = looks_complete(msg.text)
        self._verdict(turn)

    def _on_TurnEndHeard(self, msg: m.TurnEndHeard) -> None:
        turn = self._turns.get(msg.turn)
        if turn is None:
            return
        if msg.probability is None:  # the model failed: the words alone decide, as before it
            turn.heard_complete = True
        else:
            turn.heard_complete = msg.probability >= self._listen.turn_model_threshold
            log.debug("turn %d: end-of-turn model %.2f, %.0f ms after the last word", turn.id,
                      msg.probability, turn.marks.elapsed_ms())
        self._verdict(turn)

    @staticmethod
    def _verdict(turn: Turn) -> None:
        """A pause may end the turn early only when both the words (a finished sentence)
        and their sound (the end-of-turn model) say the speaker is done: each alone is
        fooled where the other is not (a recogniser's full stop at a hesitation; a falling
        voice in the middle of a list)."""
        turn.complete = turn.text_complete and turn.heard_complete

    def _on_Written(self, msg: m.Written) -> None:
        turn = self._turns.get(msg.turn)
        if turn is None:
            return
        turn.written = msg.record
        self._loading = False
        if turn.committed:
            self._on_written(turn)
        else:
            self._end_if_answered(turn)  # an answer without a sound: nothing more to wait for

    def _on_written(self, turn: Turn) -> None:
        rec = turn.written
        assert rec is not None
        if turn.audible:  # talked over or not, what was said may come back
            self._said = rec.spoken or rec.reply
        if rec.tier and not turn.cancel.cancelled:
            turn.priming = True
            self._prime(turn.id, Tier(rec.tier), rec)
        self._finish_if_heard(turn)

    def _on_Primed(self, msg: m.Primed) -> None:
        turn = self._turns.get(msg.turn)
        if turn is not None:
            turn.priming = False
            self._finish_if_heard(turn)

    def _on_FirstAudio(self, msg: m.FirstAudio) -> None:
        turn = self._turns.get(msg.turn)
        if turn is not None and turn.phase is TurnPhase.ANSWERING:
            self._advance(turn, TurnPhase.SPEAKING)

    def _on_PlaybackDone(self, msg: m.PlaybackDone) -> None:
        turn = self._turns.get(msg.turn)
        if turn is not None:
            turn.heard_all = True
            if msg.cut and not turn.cancel.cancelled:
                # Not by a barge-in, so by the device (it went away): nobody can hear the
                # rest of this answer, so it stops here too.
                turn.cut = True
                turn.cancel.cancel()
            self._finish_if_heard(turn)

    def _on_Dropped(self, msg: m.Dropped) -> None:
        turn = self._turns.get(msg.turn)
        if turn is not None:
            self._drop(turn, msg.why)

    # --- turns ------------------------------------------------------------------------

    def _new_turn(self, req: TurnRequest, zero: float, *, needs_wake: bool = False,
                  future: Future[TurnRecord] | None = None) -> Turn:
        tid = next(self._ids)
        marks = StageClock(self.clock, zero, on_mark=lambda stage, detail: self.post(
            m.StageReached(tid, stage, detail)))
        marks.point(Stage.END_OF_SPEECH if req.utterance is not None else Stage.REQUEST, zero)
        turn = Turn(tid, req, marks, needs_wake=needs_wake, future=future)
        self._turn_error = None
        self._turns[tid] = turn
        self._announce(turn)
        return turn

    def _start_voice_turn(self, utt: Utterance, speculative: bool, *,
                          near_answer: bool = False) -> None:
        push = self._view.mode is ListenMode.PUSH
        req = TurnRequest(Source.PUSH if push else Source.VOICE, Origin.MICROPHONE,
                          utterance=utt)
        needs_wake = (self._view.mode is ListenMode.WAKE
                      and self.clock.now() > self._follow_up_until)
        turn = self._new_turn(req, zero=utt.speech_end_at, needs_wake=needs_wake)
        turn.near_answer = near_answer
        log.debug("turn %d: %.1f s of sound (speech from %.1f s to %.1f s of the stream)%s",
                  turn.id, utt.duration_s, utt.start_s, utt.end_s,
                  ", at a pause" if speculative else "")
        if speculative:
            # Its answer is held until the pause proves the end; its first audio may be what
            # ends the turn (EndLikely).
            tid = turn.id
            turn.held = HeldSink(on_first=lambda: self.post(m.AnswerReady(tid)))
            self._advance(turn, TurnPhase.SPECULATING)
            self._hear_end(turn, utt)
        else:
            self._advance(turn, TurnPhase.ANSWERING)
        self._runner.submit(lambda: self._run_turn(turn), Priority.VOICE)
        self._cancel_priming()

    def _hear_end(self, turn: Turn, utt: Utterance) -> None:
        """Ask the end-of-turn model whether the pause sounds like the end (see _verdict);
        without one, the words alone decide."""
        model = self.assistant.end_of_turn
        if model is None or self._judge is None:
            turn.heard_complete = True
            return
        tid, cancel = turn.id, turn.cancel

        def judge() -> None:
            if cancel.cancelled:
                return  # the user went on: nothing to judge
            try:
                p: float | None = model.probability(utt.samples)
            except Exception as exc:  # a broken model must not stop turns from ending
                log.warning("the end-of-turn model failed (%s); the words alone decide", exc)
                p = None
            self.post(m.TurnEndHeard(tid, p))

        self._judge.submit(judge, Priority.VOICE)

    def _advance(self, turn: Turn, to: TurnPhase) -> None:
        if turn.advance(to):
            self._announce(turn)

    def _announce(self, turn: Turn) -> None:
        self._emit(Event(EventKind.PHASE, {"turn": turn.id, "phase": turn.phase.value,
                                           "source": turn.request.source.value}))

    def _drop(self, turn: Turn, why: str) -> None:
        turn.cancel.cancel()
        if turn.held is not None:
            turn.held.discard()
        turn.why = why
        log.debug("turn %d dropped: %s", turn.id, why)
        self._advance(turn, TurnPhase.DROPPED)
        self._turns.pop(turn.id, None)
        if turn.future is not None and not turn.future.done():
            turn.future.set_exception(RequestError(why))

    def _interrupt_answers(self, barge_onset: float | None = None) -> None:
        """Cut every answer being written or heard; the speaker drops their audio."""
        answering = [t for t in self._turns.values()
                     if t.committed and t.audible and not t.cancel.cancelled]
        if not answering:
            return
        for turn in answering:
            turn.barged = True
            turn.cancel.cancel()
        if self._output is not None:
            self._output.stop()
        if barge_onset is not None and self._output is not None:
            stopped = self._output.stopped_at
            for turn in answering:
                turn.marks.span(Stage.BARGE_IN, barge_onset,
                                max(barge_onset, stopped if stopped is not None else barge_onset))

    def _finish_if_heard(self, turn: Turn) -> None:
        """A turn is over once its reply is written, its audio heard, and the next prompt
        read into the model (so that a follow-up finds it ready)."""
        if turn.written is None or not turn.heard_all or turn.priming or not turn.committed:
            return
        rec = turn.written
        interrupted = turn.cancel.cancelled or turn.cut
        outcome = TurnPhase.INTERRUPTED if interrupted else TurnPhase.DONE
        rec.interrupted = rec.interrupted or interrupted
        if turn.cut and rec.error is None:
            rec.error = "the answer was cut short: the speaker went away"
        rec.outcome = outcome.value
        rec.id = turn.id
        turn.marks.point(Stage.DONE)
        rec.seal(turn.marks)
        self._advance(turn, outcome)
        self._turns.pop(turn.id, None)
        self.assistant.remember(rec)
        if self._view.mode is ListenMode.WAKE and turn.request.utterance is not None:
            self._follow_up_until = self.clock.now() + self._listen.follow_up_s
        if rec.error:  # announced for a while, or until the next turn (SARAi said sorry too)
            self._turn_error = f"the last turn could not be answered: {rec.error}"
            self._turn_error_until = self.clock.now() + _TURN_ERROR_S
        self._history.append(rec)
        self._history_view = tuple(self._history)
        self._view = replace(self._view, turns=self._view.turns + 1)
        self._emit(Event(EventKind.TURN, rec.as_dict()))
        if turn.future is not None and not turn.future.done():
            turn.future.set_result(rec)

    # --- queries over turns -----------------------------------------------------------

    def _speculative(self) -> Turn | None:
        return next((t for t in self._turns.values() if t.speculative), None)

    def _talking(self) -> Turn | None:
        """The committed turn, to be heard on the speaker, that the user has not talked over."""
        return next((t for t in self._turns.values()
                     if t.committed and t.audible and not t.barged and not t.heard_all), None)

    def _listening(self) -> bool:
        return self._view.mode is not ListenMode.MUTED and not self._view.stopping

    # --- priming and warming ----------------------------------------------------------

    def _prime(self, turn_id: int, tier: Tier, rec: TurnRecord) -> None:
        """Read the conversation as it will be into the models while the answer is heard, so a
        quick follow-up does not wait for it (see Assistant.prime_after). Any new turn cancels
        it."""
        self._cancel_priming()
        token = self._prime_cancel = CancelToken()
        language = rec.language

        def prime() -> None:
            try:
                self.assistant.prime_after(tier, language, after=rec, cancel=token)
                if not token.cancelled:
                    # A turn's buffers (audio, Whisper's, the decode's) are free again: hand
                    # their pages back, or glibc keeps them and the daemon only grows; and
                    # free what sits in reference cycles now, not at Python's next full
                    # collection (see memory.release_freed).
                    memory.release_freed()
            finally:
                self.post(m.Primed(turn_id))

        self._runner.submit(prime, Priority.BACKGROUND)

    def _cancel_priming(self) -> None:
        if self._prime_cancel is not None:
            self._prime_cancel.cancel()
            self._prime_cancel = None

    def _maybe_warm_up(self, utt: Utterance) -> None:
        """A long turn is likely to need the quality tier: start loading it while the user
        is still talking (the load runs in the background; it never evicts anything)."""
        try:
            advice = self.assistant.router.warmup("", utt.duration_s)
            if advice.warm and not self.assistant.registry.is_loaded(advice.tier):
                self.assistant.registry.warm_up(advice.tier)
        except Exception as exc:  # a hint, never a reason to drop the turn
            log.debug("warm-up advice failed: %s", exc)

    # --- the job (runner thread) ------------------------------------------------------

    def _open_sink(self, turn: Turn) -> AudioSink | None:
        req = turn.request
        if not req.speak:
            return None
        output: Output | None = WavOutput(req.output) if req.output is not None else self._output
        if output is None:
            return None
        tid = turn.id
        session = output.session(
            on_first_audio=lambda t: self.post(m.FirstAudio(tid, t)),
            on_done=lambda t, cut: self.post(m.PlaybackDone(tid, t, cut)))
        if isinstance(output, WavOutput):
            turn.file_output = output
        if turn.held is not None:
            turn.held.attach(session)
            return turn.held
        return session

    def _run_turn(self, turn: Turn) -> None:
        """Answer one turn; report back to the core as it goes. Runs on the runner."""
        if turn.phase.final:
            return
        if turn.cancel.cancelled:
            # Talked over before its job began: the core must hear that it ended, or it
            # waits for this turn's answer for ever (and says "thinking" all along).
            self.post(m.Dropped(turn.id, "talked over before it was answered"))
            return
        self.post(m.Started(turn.id))
        sink = self._open_sink(turn)
        if sink is None:
            self.post(m.PlaybackDone(turn.id, self.clock.now()))
        rec: TurnRecord | None = None
        try:
            rec = self._answer(turn, sink)
        except Exception as exc:  # a turn must never take the conversation down with it
            log.exception("turn %d failed", turn.id)
            rec = rec or TurnRecord(transcript=turn.request.text, source=turn.request.source)
            rec.error = f"the turn failed: {type(exc).__name__}: {exc}"
        finally:
            if sink is not None:
                sink.finish()
            out = turn.file_output
            if out is not None:
                try:
                    out.close()
                except Exception as exc:
                    log.error("cannot write the answer: %s", exc)
                    if rec is not None and rec.error is None:
                        rec.error = str(exc)
        if rec is None:
            return  # dropped: already reported
        self.post(m.Written(turn.id, rec))

    def _answer(self, turn: Turn, sink: AudioSink | None) -> TurnRecord | None:
        req, a, marks = turn.request, self.assistant, turn.marks
        if req.utterance is None:
            try:
                media = self._load_media(req)
            except ModelError as exc:  # an attachment that cannot be read: say which, why
                return TurnRecord(transcript=req.text, source=req.source.value,
                                  language=req.language or a.language, error=str(exc))
            return a.text_turn(req.text, sink, turn.cancel, marks, media=media,
                               language=req.language, remember=False)
        rec = a.transcribe(req.utterance, marks)
        rec.source = req.source.value
        self.post(m.Transcribed(turn.id, rec.transcript))
        if turn.cancel.cancelled:  # talked over while it was transcribed: recorded as such
            rec.interrupted = True
            return rec
        if not rec.transcript.strip():
            self.post(m.Dropped(turn.id, "nothing recognisable was said"))
            return None
        if turn.needs_wake:
            heard, rest = match_wake(rec.transcript, self._listen.wake_phrases)
            if not heard:
                log.info("no wake phrase in %r; ignored", rec.transcript)
                self.post(m.Dropped(turn.id, "no wake phrase"))
                return None
            rec.transcript = rest
            if not rest:
                rec.reason = "wake phrase only: listening for the request"
                rec.reply = _WAKE_ACK.get(rec.language, _WAKE_ACK["en"])
                if sink is not None:
                    a.say(rec.reply, rec.language, sink, turn.cancel, marks)
                return rec
        return a.voice_turn(req.utterance, sink, turn.cancel, marks, rec=rec, remember=False)

    def _load_media(self, req: TurnRequest) -> list:
        """The attachments, decoded within the limits; audio must hold speech."""
        if not req.media:
            return []
        from sarai.models.attachments import MediaLimits, load

        limits = MediaLimits()
        media = []
        for ref in req.media:
            if ref.loaded:
                media.extend(ref.loaded)
                continue
            path = Path(ref.path)
            if not path.exists():
                raise ModelError(f"attachment {path} was removed before SARAi could read it")
            media.extend(load(path, limits, expect=ref.kind, vad=self._vad))
        return media

    # --- state ------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Derive the state from what the core knows, publish the view, announce changes."""
        v = self._view
        committed = [t for t in self._turns.values() if t.committed]
        message = None
        if self._asked_load and not committed:
            state, message = State.LOADING, f"loading {self._asked_load}"
        elif committed:
            if self._loading:
                state, message = State.LOADING, f"loading {self._loading}"
            elif any(t.phase is TurnPhase.SPEAKING for t in committed):
                state = State.SPEAKING
            else:
                state = State.THINKING
        elif v.mode is ListenMode.MUTED:
            state = State.MUTED
        elif self._device_error:
            state, message = State.ERROR, self._device_error
        elif self._turn_error and not self._hearing \
                and self.clock.now() < self._turn_error_until:
            state, message = State.ERROR, self._turn_error
        elif not self._mic_live:
            state = State.IDLE
        else:
            state = State.HEARING if self._hearing else State.LISTENING
        talking = self._talking()
        spec = self._speculative()
        self._view = replace(
            v, state=state, message=message,
            answering=talking.id if talking is not None else None,
            speculative=spec.id if spec is not None else None,
            speculative_complete=bool(spec is not None and spec.complete),
            committed=max([v.committed, *(t.id for t in committed)]))
        if (state, message) != (v.state, v.message):
            self._emit(Event(EventKind.STATE, {"state": state.value, "message": message}))

