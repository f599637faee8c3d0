"""The hands-free loop: microphone → VAD → turn → speaker, on its own thread.

It owns the microphone, the speaker and the segmenter; the Assistant does the turn itself.
Everything observable (state changes, turns) is announced through `emit`, which the daemon
fans out to the control API, the tray and the logs.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from audio.devices import MicSource, SpeakerSink
from audio.errors import AudioError
from audio.settings import AudioSettings
from audio.vad import UtteranceSegmenter, VadState
from daemon.events import Event, EventKind, ListenMode, State
from daemon.turn import Assistant, TurnRecord

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]


class VoiceLoop:
    """Listens and answers until stopped. Thread-safe controls: mode, push, ask, forget."""

    def __init__(self, audio: AudioSettings, assistant: Assistant, emit: Emit,
                 mode: ListenMode = ListenMode.ALWAYS, history_size: int = 50) -> None:
        self._audio = audio
        self.assistant = assistant
        self._emit = emit
        self._mode = mode
        self._pushing = False
        self._state = State.IDLE
        self._history: deque[TurnRecord] = deque(maxlen=history_size)
        self._stop = threading.Event()
        self._turn_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._mic: MicSource | None = None
        self.speaker: SpeakerSink | None = None
        self.turns = 0

    # --- observable state -------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def mode(self) -> ListenMode:
        return self._mode

    def _set_state(self, state: State, message: str | None = None) -> None:
        if state is not self._state or message:
            self._state = state
            self._emit(Event(EventKind.STATE, {"state": state.value, "message": message}))

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
        """Push-to-talk: in `push` mode only speech while pushed becomes a turn."""
        self._pushing = active

    def forget(self) -> None:
        self.assistant.forget()

    def ask(self, text: str) -> TurnRecord:
        """A typed turn, answered aloud like a spoken one."""
        with self._turn_lock:
            self._set_state(State.THINKING)
            rec = self.assistant.text_turn(text, self.speaker)
            self._finish_turn(rec)
            return rec

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Open the devices and start listening; raises AudioError if they cannot be opened."""
        self._mic = MicSource(self._audio.input_device, block_ms=self._audio.vad.frame_ms)
        self.speaker = SpeakerSink(self._audio.output_device)
        self._mic.start()
        self._thread = threading.Thread(target=self._run, name="voice-loop", daemon=True)
        self._thread.start()
        self._set_state(State.MUTED if self._mode is ListenMode.MUTED else State.LISTENING)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
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

    def _run(self) -> None:
        assert self._mic is not None
        seg = UtteranceSegmenter(self._audio.vad)
        while not self._stop.is_set():
            block = self._mic.read(timeout=0.2)
            if block is None:
                continue
            if self._mode is ListenMode.MUTED or (
                self._mode is ListenMode.PUSH and not self._pushing
            ):
                seg.reset()
                continue
            for utt in seg.push(block):
                self._voice_turn(utt)
                # Half duplex: what the microphone heard while SARAi spoke is not a turn.
                self._mic.clear()
                seg.reset()
            if self._state in (State.LISTENING, State.HEARING):
                self._set_state(State.HEARING if seg.state is VadState.SPEECH else State.LISTENING)

    def _voice_turn(self, utt) -> None:
        with self._turn_lock:
            self._set_state(State.THINKING)
            try:
                rec = self.assistant.voice_turn(utt, self.speaker)
            except AudioError as exc:
                self._set_state(State.ERROR, str(exc))
                return
            if rec.transcript.strip():
                self._finish_turn(rec)
            else:
                self._set_state(State.LISTENING)

    def _finish_turn(self, rec: TurnRecord) -> None:
        self.turns += 1
        self._history.append(rec)
        self._emit(Event(EventKind.TURN, rec.as_dict()))
        self._set_state(State.MUTED if self._mode is ListenMode.MUTED else State.LISTENING)
