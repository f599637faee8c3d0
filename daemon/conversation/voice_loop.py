"""The hands-free loop: microphone → VAD → turn → speaker.

Two kinds of threads: the capture thread reads the microphone, removes SARAi's own voice
(echo gate), runs the VAD and decides when a turn starts, is spoken over or is over; each
turn then runs on a thread of its own so listening never stops. Everything observable (state
changes, turns) is announced through `emit`.

Turn starts are speculative: at a short pause the turn begins (ASR, model) with its audio
held back; if the user goes on, it is dropped, and if the pause becomes the end of the turn,
the held audio is released at once. Talking over SARAi (barge-in) cancels the turn and stops
playback; the new utterance is then answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sarai.audio.devices import HeldSink, MicSource, SpeakerSink
from sarai.audio.echo import EchoGate
from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE, timed_frames
from sarai.audio.settings import AudioSettings
from sarai.audio.vad import SegmentKind, Utterance, UtteranceSegmenter, VadState, second_opinion
from sarai.daemon.conversation.barge_in import BargeAction, BargeInDetector, BargeInTiming
from sarai.daemon.config import ListenSettings
from sarai.daemon.conversation.endpoint import looks_complete
from sarai.daemon.events import Event, EventKind, ListenMode, State
from sarai.daemon.conversation.turn import Assistant, TurnRecord
from sarai.daemon.conversation.wake import match_wake
from sarai.models.backend import CancelToken
from sarai.models.settings import Tier

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
_WAKE_ACK = {"en": "Yes?", "es": "¿Sí?"}


def _rms(block: np.ndarray) -> float:
    return float(np.sqrt(np.mean(block.astype(np.float64) ** 2))) if len(block) else 0.0


@dataclass
class _Turn:
    utterance: Utterance | None
    cancel: CancelToken
    sink: HeldSink | None  # set for a speculative turn until it is committed
    thread: threading.Thread | None = None
    committed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    barge_in_onset: float | None = None
    barged: bool = False  # the user talked over this answer
    complete: bool = False  # its transcript reads as a finished sentence
    finished: bool = False  # answered; the thread may still be priming the next prompt
    primed: tuple | None = None  # the exchange the next prompt was primed with while heard

    @property
    def running(self) -> bool:
        return not self.done.is_set()


class VoiceLoop:
    """Listens and answers until stopped. Thread-safe controls: mode, push, ask, forget."""

    def __init__(self, audio: AudioSettings, assistant: Assistant, emit: Emit,
                 mode: ListenMode | None = None, history_size: int = 50,
                 listen: ListenSettings | None = None) -> None:
        self._audio = audio
        self._listen = listen or ListenSettings()
        self.assistant = assistant
        assistant.on_loading = self._on_loading
        self._emit = emit
        self._mode = mode or self._listen.mode
        self._pushing = False
        self._push_released = False
        self._state = State.IDLE
        self._history: deque[TurnRecord] = deque(maxlen=history_size)
        self._stop = threading.Event()
        self._turn_lock = threading.Lock()  # one answer at a time
        self._turn: _Turn | None = None
        self._thread: threading.Thread | None = None
        self._mic: MicSource | None = None
        self._echo = EchoGate()
        self._follow_up_until = 0.0
        self._barge = BargeInDetector(BargeInTiming(
            frame_ms=audio.vad.frame_ms, pause_ms=self._listen.barge_in_pause_ms,
            confirm_ms=self._listen.barge_in_confirm_ms))
        self.speaker: SpeakerSink | None = None
        self.turns = 0
        self.mic_errors = 0

    # --- observable state -------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def mic_live(self) -> bool:
        """The microphone is open and its audio is flowing (a fresh stream can take a
        couple of seconds before the first block)."""
        mic = self._mic
        return mic is not None and mic.delivered > 0

    @property
    def mode(self) -> ListenMode:
        return self._mode

    def _set_state(self, state: State, message: str | None = None) -> None:
        if state is not self._state or message:
            self._state = state
            self._emit(Event(EventKind.STATE, {"state": state.value, "message": message}))

    def _resting_state(self) -> State:
        return State.MUTED if self._mode is ListenMode.MUTED else State.LISTENING

    def history(self) -> list[TurnRecord]:
        return list(self._history)

    # --- controls ---------------------------------------------------------------------

    def set_mode(self, mode: ListenMode) -> None:
        self._mode = mode
        self._emit(Event(EventKind.MODE, {"mode": mode.value}))
        if mode is ListenMode.MUTED:
            self._set_state(State.MUTED)
        elif self._state is State.MUTED:
            self._set_state(State.LISTENING)

    def push(self, active: bool) -> None:
        """Push-to-talk: in `push` mode only speech while pushed becomes a turn, and
        releasing ends the turn at once."""
        if self._pushing and not active:
            self._push_released = True
        self._pushing = active

    def forget(self) -> None:
        self.assistant.forget()

    def ask(self, text: str) -> TurnRecord:
        """A typed turn, answered aloud like a spoken one (and interruptible the same way)."""
        with self._turn_lock:
            turn = _Turn(None, CancelToken(), None)
            turn.committed.set()
            self._turn = turn
            self._set_state(State.THINKING)
            try:
                rec = self.assistant.text_turn(text, self.speaker, turn.cancel)
            finally:
                turn.done.set()
            self._note_barge_in(turn, rec)
            self._finish_turn(rec)
            self._prime_next(turn, rec)
            return rec

    def _note_barge_in(self, turn: _Turn, rec: TurnRecord) -> None:
        if turn.barge_in_onset is None or self.speaker is None:
            return
        self.speaker.drain()  # returns within a block once stopped; then stopped_at is set
        stopped = self.speaker.stopped_at
        if turn.barge_in_onset is not None and stopped is not None:
            rec.timings["barge_in_stop"] = round(max(0.0, stopped - turn.barge_in_onset) * 1000, 1)

    def interrupt(self) -> bool:
        """Stop the current answer (as barge-in does); True if there was one."""
        turn = self._turn
        if turn is None or not turn.running:
            return False
        turn.cancel.cancel()
        if turn.sink is not None:
            turn.sink.discard()
        if self.speaker is not None:
            self.speaker.stop()
        return True

    # --- lifecycle --------------------------------------------------------------------

    def start(self, wait_for_device: bool = False) -> None:
        """Open the devices and start listening.

        Without `wait_for_device`, a missing microphone or speaker raises AudioError; with it,
        the loop reports the error state and keeps retrying.
        """
        self.assistant.warm_up()
        try:
            self._open_devices()
        except AudioError as exc:
            if not wait_for_device:
                raise
            self._set_state(State.ERROR, f"{exc}; retrying every {self._listen.device_retry_s:g} s")
        self._thread = threading.Thread(target=self._run, name="voice-loop", daemon=True)
        self._thread.start()
        if self._mic is not None:
            self._set_state(self._resting_state())

    def _open_devices(self) -> None:
        mic = MicSource(self._audio.input_device, block_ms=self._audio.mic_block_ms)
        mic.start()
        if self.speaker is None:
            try:
                self.speaker = SpeakerSink(self._audio.output_device,
                                           on_played=self._echo.played)
            except AudioError:
                mic.close()
                raise
        self._mic = mic

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.interrupt()
        if self._thread is not None:
            self._thread.join(timeout)
        turn = self._turn
        if turn is not None:
            turn.done.wait(timeout)
        if self._mic is not None:
            self._mic.close()
        if self.speaker is not None:
            self.speaker.stop()
            self.speaker.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the loop ends; True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- capture thread ---------------------------------------------------------------

    def _reopen_mic(self) -> None:
        """The microphone is missing or went away: report it and retry until it is back."""
        if self._mic is not None:
            self._mic.close()
            self._mic = None
        if self._barge.reset() is BargeAction.RESUME and self.speaker is not None:
            self.speaker.resume()  # nobody is left to confirm the pause
        self.mic_errors += 1
        while not self._stop.is_set():
            try:
                self._open_devices()
                self._set_state(self._resting_state(), "microphone is back")
                return
            except AudioError as exc:
                self._set_state(State.ERROR,
                                f"{exc}; retrying every {self._listen.device_retry_s:g} s")
                self._stop.wait(self._listen.device_retry_s)

    def _run(self) -> None:
        seg = UtteranceSegmenter(self._audio.vad, pause_ms=self._listen.speculate_pause_ms or None,
                                 second_opinion=second_opinion(self._audio.vad))
        silent_reads = 0
        while not self._stop.is_set():
            if self._mic is None or (silent_reads > 10 and not self._mic.alive):
                self._reopen_mic()
                silent_reads = 0
                continue
            item = self._mic.read_timed(timeout=0.2)
            if item is None:
                silent_reads += 1
                continue
            block, captured_at = item
            silent_reads = 0
            for frame, at in timed_frames(block, captured_at, seg.frame_ms):
                self._hear(seg, frame, at)
            # Small blocks while an answer plays (barge-in must be quick), large ones while
            # only listening (fewer wakeups).
            self._mic.set_block_ms(seg.frame_ms if self._busy() else self._audio.mic_block_ms)

    def _hear(self, seg: UtteranceSegmenter, block: np.ndarray, captured_at: float) -> None:
        """One VAD frame of microphone audio, heard at `captured_at`."""
        if self._mode is ListenMode.MUTED or (
            self._mode is ListenMode.PUSH and not self._pushing
        ):
            if self._push_released:
                self._push_released = False
                for utt in seg.flush():
                    self._on_end(utt)
            seg.reset()
            return
        busy = self._busy(captured_at)
        if busy:
            if not self._listen.barge_in:
                seg.reset()  # half duplex: what is heard while answering is not a turn
                return
            block = self._without_echo(block, captured_at)
        self._watch_barge_in(seg, block, captured_at, busy)
        for ev in seg.push_events(block):
            if ev.kind is SegmentKind.PAUSE and ev.utterance is not None:
                self._on_pause(ev.utterance)
            elif ev.kind is SegmentKind.RESUME:
                self._on_resume()
            elif ev.kind is SegmentKind.END and ev.utterance is not None:
                self._on_end(ev.utterance)
        if self._ends_early(seg):
            self._end_early(seg)
        self._update_state(seg)

    def _ends_early(self, seg: UtteranceSegmenter) -> bool:
        """The speculative answer's transcript reads as finished and the pause has lasted
        `complete_silence_ms`: take it as the end of the turn without the full silence."""
        ms = self._listen.complete_silence_ms
        turn = self._turn
        return (ms > 0 and seg.state is VadState.SPEECH and seg.silence_ms >= ms
                and turn is not None and turn.sink is not None and turn.complete
                and not turn.committed.is_set() and not turn.cancel.cancelled)

    def _end_early(self, seg: UtteranceSegmenter) -> None:
        utts = seg.flush()
        if utts:
            self._on_end(utts[0])
        elif self._turn is not None and self._turn.sink is not None:
            self._turn.cancel.cancel()  # the closing check took it for noise after all
            self._turn.sink.discard()

    def _update_state(self, seg: UtteranceSegmenter) -> None:
        if self._answering() is not None:
            if self._state in (State.THINKING, State.LOADING) and self.speaker is not None \
                    and self.speaker.playing:
                self._set_state(State.SPEAKING)
        elif self._state in (State.LISTENING, State.HEARING):
            self._set_state(State.HEARING if seg.state is VadState.SPEECH else State.LISTENING)

    def _without_echo(self, block: np.ndarray, captured_at: float) -> np.ndarray:
        """The block with SARAi's own voice removed; silence where only echo remains.

        A frame counts as the user only if what is left after removing the echo is both loud
        enough and a large share of what was heard: the user's voice survives the subtraction
        whole, while echo leaves a residue well below the frame's level.
        """
        cleaned = self._echo.clean(block, captured_at)
        rms_in = _rms(block)
        rms_out = _rms(cleaned)
        floor = max(self._listen.barge_in_min_rms, self._listen.barge_in_echo_ratio * rms_in)
        return np.zeros_like(cleaned) if rms_out < floor else cleaned

    def _busy(self, at: float | None = None) -> bool:
        """An answer is being spoken, or its echo may still be in audio heard at `at` (now).
        A speculative start is not busy: the user may well go on talking."""
        return self._answering() is not None or self._echo.active(at)

    def _answering(self) -> _Turn | None:
        turn = self._turn
        if turn is None or not turn.running or turn.finished or not turn.committed.is_set():
            return None
        return turn

    def _watch_barge_in(self, seg: UtteranceSegmenter, cleaned: np.ndarray,
                        captured_at: float, busy: bool) -> None:
        """Pause the answer as soon as the user seems to talk over it, interrupt it once
        that is sure, resume it if it was not the user (see daemon.barge_in)."""
        speaker, turn = self.speaker, self._answering()
        if not busy or turn is None or turn.barged or speaker is None:
            if self._barge.reset() is BargeAction.RESUME and speaker is not None:
                speaker.resume()
            return
        n = SAMPLE_RATE * seg.frame_ms // 1000
        if len(cleaned) < n:
            return  # a remainder shorter than a frame (kept by the segmenter): nothing to judge
        voiced = bool(cleaned.any()) and seg.is_speech(cleaned[:n])
        action = self._barge.feed(voiced, captured_at)
        if action is BargeAction.PAUSE:
            speaker.pause()
        elif action is BargeAction.RESUME:
            speaker.resume()
            log.debug("barge-in candidate faded; answer resumed")
        elif action is BargeAction.INTERRUPT:
            turn.barge_in_onset = self._barge.onset
            turn.barged = True
            self._barge.reset()
            self.interrupt()
            log.info("barge-in: answer interrupted")

    def _on_loading(self, what: str) -> None:
        self._set_state(State.LOADING, f"loading {what}")

    def _on_pause(self, utt: Utterance) -> None:
        self._maybe_warm_up(utt)
        if self._turn is None or not self._turn.running or self._turn.finished:
            self._start_turn(utt, speculative=True)

    def _maybe_warm_up(self, utt: Utterance) -> None:
        """A long turn is likely to need the quality tier: start loading it while the user
        is still talking (the load runs in the background; it never evicts anything)."""
        try:
            advice = self.assistant.router.warmup("", utt.duration_s)
            if advice.warm and not self.assistant.registry.is_loaded(advice.tier):
                self.assistant.registry.warm_up(advice.tier)
        except Exception as exc:  # a hint, never a reason to drop the turn
            log.debug("warm-up advice failed: %s", exc)

    def _talked_over(self) -> bool:
        """True unless an answer is playing that nobody has interrupted: then what was heard
        is left-over echo of that answer, not a new turn."""
        turn = self._answering()
        return turn is None or turn.barged

    def _on_resume(self) -> None:
        turn = self._turn
        if turn is not None and turn.sink is not None and not turn.committed.is_set():
            turn.cancel.cancel()  # the pause was not the end; drop the speculative start
            turn.sink.discard()

    def _on_end(self, utt: Utterance) -> None:
        if not self._talked_over():
            log.info("ignored %.1f s of sound heard during the answer", utt.duration_s)
            return
        turn = self._turn
        if turn is not None and turn.running and turn.sink is not None \
                and not turn.committed.is_set() and not turn.cancel.cancelled:
            # The speculative start was right: commit first, so the turn that sees its
            # audio released also sees itself committed.
            turn.committed.set()
            turn.sink.release()
            self._set_state(State.THINKING)
            return
        self._start_turn(utt, speculative=False)

    # --- turns ------------------------------------------------------------------------

    def _start_turn(self, utt: Utterance, speculative: bool) -> None:
        previous = self._turn
        if previous is not None and previous.running:
            previous.cancel.cancel()
        assert self.speaker is not None
        held = HeldSink(self.speaker, expire_s=self._audio.vad.end_silence_ms / 1000 + 2)
        turn = _Turn(utt, CancelToken(), held if speculative else None)
        if not speculative:
            turn.committed.set()
            self._set_state(State.THINKING)
        turn.thread = threading.Thread(target=self._turn_main, args=(turn, previous),
                                       name="turn", daemon=True)
        self._turn = turn
        turn.thread.start()

    def _turn_main(self, turn: _Turn, previous: _Turn | None) -> None:
        if previous is not None:
            previous.done.wait()
        with self._turn_lock:
            try:
                self._answer(turn)
            except AudioError as exc:
                self._set_state(State.ERROR, str(exc))
            except Exception:  # a turn must never take the loop down with it
                log.exception("turn failed")
                self._set_state(State.ERROR, "a turn failed; see the log")
            finally:
                if turn.sink is not None and not turn.committed.is_set():
                    turn.sink.discard()
                turn.done.set()
        if self._turn is turn and self._state not in (State.ERROR, State.MUTED):
            self._set_state(self._resting_state())

    def _answer(self, turn: _Turn) -> None:
        assert turn.utterance is not None and self.speaker is not None
        rec = self.assistant.transcribe(turn.utterance)
        if turn.cancel.cancelled:
            return
        if not rec.transcript.strip():
            return
        wake_only = False
        if self._mode is ListenMode.WAKE and time.monotonic() > self._follow_up_until:
            heard, rest = match_wake(rec.transcript, self._listen.wake_phrases)
            if not heard:
                log.info("no wake phrase in %r; ignored", rec.transcript)
                return
            rec.transcript, wake_only = rest, not rest
        # A speculative turn is answered in full, its audio held back until the pause proves
        # to be the end of the turn (then it plays at once) or the user goes on (dropped).
        turn.complete = looks_complete(rec.transcript)
        sink = turn.sink or self.speaker
        if wake_only:
            rec = self._acknowledge_wake(rec, sink)
        else:
            rec = self.assistant.voice_turn(
                turn.utterance, sink, turn.cancel, remember=False, transcribed=rec,
                on_reply=lambda written: self._prime_while_heard(turn, written))
        if turn.sink is not None:
            if not turn.committed.is_set():
                turn.cancel.cancel()
                turn.sink.discard()
                return  # a speculative start that never became a turn
            self._first_audio_heard(rec, turn.sink, turn.utterance.speech_end_at)
        if self._mode is ListenMode.WAKE:
            self._follow_up_until = time.monotonic() + self._listen.follow_up_s
        self._note_barge_in(turn, rec)
        self.assistant.remember(rec)
        self._finish_turn(rec)
        self._prime_next(turn, rec)

    @staticmethod
    def _exchange(rec: TurnRecord) -> tuple:
        return rec.transcript, rec.reply, rec.interrupted

    def _prime_while_heard(self, turn: _Turn, rec: TurnRecord) -> None:
        """The reply is written and is being spoken: read the conversation as it will be
        into the model now, rather than after the answer (a quick follow-up would wait)."""
        if turn.committed.is_set() and rec.tier and not self._stop.is_set():
            self.assistant.prime(Tier(rec.tier), rec.language, after=rec, cancel=turn.cancel)
            if not turn.cancel.cancelled:
                turn.primed = self._exchange(rec)

    def _prime_next(self, turn: _Turn, rec: TurnRecord) -> None:
        """Read the conversation so far into the answering model while the user listens,
        unless that was done while the answer was spoken or the next turn has begun."""
        turn.finished = True  # from here on, what is heard is a new turn
        if turn.primed == self._exchange(rec):
            return
        if rec.tier and self._turn is turn and not self._stop.is_set():
            self.assistant.prime(Tier(rec.tier), rec.language, cancel=turn.cancel)

    @staticmethod
    def _first_audio_heard(rec: TurnRecord, sink: HeldSink, speech_end_at: float) -> None:
        """Held audio is first heard when it is released, not when it was synthesised."""
        if sink.first_out_at is not None and "first_audio" in rec.timings:
            heard = round((sink.first_out_at - speech_end_at) * 1000, 1)
            rec.timings["first_audio"] = max(rec.timings["first_audio"], heard)

    def _acknowledge_wake(self, rec: TurnRecord, sink) -> TurnRecord:
        rec.reason = "wake phrase only: listening for the request"
        rec.reply = _WAKE_ACK.get(rec.language, _WAKE_ACK["en"])
        if self.assistant.voices is not None:
            voice = self.assistant.voices.voice(rec.language)
            sink.play(voice.synthesize(rec.reply), voice.sample_rate)
            sink.drain()
        return rec

    def _finish_turn(self, rec: TurnRecord) -> None:
        self.turns += 1
        self._history.append(rec)
        self._emit(Event(EventKind.TURN, rec.as_dict()))
        if self._state is not State.MUTED:
            self._set_state(self._resting_state())
