"""The hands-free loop: microphone → front end → conversation core → speaker.

This is the part that owns the sound devices. One thread reads the microphone and hands each
VAD frame, with its capture time, to the front end; the conversation core decides what to do
and the runner answers. A microphone that goes away is retried until it comes back, in the
error state, without stopping anything else.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from sarai.audio.devices import MicSource, SpeakerSink, rescan_devices
from sarai.audio.errors import AudioError
from sarai.audio.pcm import timed_frames
from sarai.audio.settings import AudioSettings
from sarai.daemon.config import ListenSettings
from sarai.daemon.conversation.core import ConversationCore, Emit
from sarai.daemon.conversation.echo_setup import echo_canceller
from sarai.daemon.conversation.frontend import FrontEnd
from sarai.daemon.conversation.record import TurnRecord
from sarai.daemon.conversation.requests import typed
from sarai.daemon.conversation.turn import Assistant
from sarai.daemon.events import ListenMode, State

log = logging.getLogger(__name__)


class VoiceLoop:
    """Listens and answers until stopped. `core` may be shared with the rest of the daemon
    (it outlives a restarted loop); without one the loop makes its own."""

    def __init__(self, audio: AudioSettings, assistant: Assistant, emit: Emit,
                 mode: ListenMode | None = None, history_size: int = 50,
                 listen: ListenSettings | None = None,
                 core: ConversationCore | None = None) -> None:
        self._audio = audio
        self._listen = listen or ListenSettings()
        self.assistant = assistant
        self._own_core = core is None
        self.core = core or ConversationCore(assistant, self._listen, emit, mode=mode,
                                             history_size=history_size, vad=audio.vad)
        # Chosen before any device opens: it may point them at the desktop's echo-cancelled
        # microphone and its speaker.
        self._echo = echo_canceller(self._listen, audio)
        self.front = FrontEnd(self.core, audio.vad, self._listen, self._echo)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mic: MicSource | None = None
        self.speaker: SpeakerSink | None = None
        self.mic_errors = 0
        self.warmed: Future[None] = Future()  # done once the models have read the system prompt

    # --- what others read and do ------------------------------------------------------

    @property
    def state(self) -> State:
        return self.core.state

    @property
    def mode(self) -> ListenMode:
        return self.core.mode

    @property
    def turns(self) -> int:
        return self.core.view.turns

    @property
    def mic_live(self) -> bool:
        """The microphone is open and its audio is flowing (a fresh stream can take a
        couple of seconds before the first block)."""
        mic = self._mic
        return mic is not None and mic.delivered > 0

    def history(self) -> list[TurnRecord]:
        return self.core.history()

    def set_mode(self, mode: ListenMode) -> None:
        self.core.set_mode(mode)

    def push(self, active: bool) -> None:
        """Push-to-talk: in `push` mode only speech while pushed becomes a turn, and
        releasing ends the turn at once."""
        self.core.push(active)

    def forget(self) -> None:
        self.core.forget().result(10)

    def ask(self, text: str, timeout: float | None = 300) -> TurnRecord:
        """A typed turn, answered aloud like a spoken one (and interruptible the same way)."""
        return self.core.ask(typed(text)).result(timeout)

    def interrupt(self) -> None:
        self.core.interrupt("asked to stop")

    # --- lifecycle --------------------------------------------------------------------

    def start(self, wait_for_device: bool = False) -> None:
        """Open the devices and start listening.

        Without `wait_for_device`, a missing microphone or speaker raises AudioError; with it,
        the loop reports the error state and keeps retrying.
        """
        try:
            self._open_devices()
        except AudioError as exc:
            if not wait_for_device:
                raise
            self.core.device_error(f"{exc}; retrying every {self._listen.device_retry_s:g} s")
        if self._own_core:
            self.core.start()
        self.warmed = self.core.warm_up()
        self._thread = threading.Thread(target=self._run, name="voice-loop", daemon=True)
        self._thread.start()

    def _open_devices(self) -> None:
        mic = MicSource(self._audio.input_device, block_ms=self._audio.mic_block_ms)
        mic.start()
        if self.speaker is None:
            try:
                self.speaker = SpeakerSink(self._audio.output_device,
                                           on_played=self._echo.played,
                                           on_dropped=self._echo.dropped,
                                           on_ran_dry=self._echo.ran_dry)
            except AudioError:
                mic.close()
                raise
            self.front.speaker = self.speaker
            self.core.attach_output(self.speaker)
        self._mic = mic
        self.core.device_error(None)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.core.interrupt("the voice loop is stopping")
        if self._thread is not None:
            self._thread.join(timeout)
        if self._own_core:
            self.core.stop(timeout)
        else:
            self.core.attach_output(None)
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

    # --- the microphone thread --------------------------------------------------------

    def _check_speaker(self) -> None:
        """A speaker that went away mid-answer cuts that answer (its sessions end as cut);
        the next answer opens the device again."""
        speaker = self.speaker
        if speaker is not None and speaker.playing and not speaker.alive:
            log.error("the speaker went away in the middle of an answer")
            speaker.stop()

    def _reopen_mic(self) -> None:
        """The microphone is missing or went away: report it and retry until it is back."""
        self._check_speaker()
        if self._mic is not None:
            self._mic.close()
            self._mic = None
        self.front.device_lost()
        self.mic_errors += 1
        while not self._stop.is_set():
            try:
                if self.speaker is None:  # no stream open: PortAudio may list devices afresh
                    rescan_devices()
                self._open_devices()
                log.info("microphone is back")
                return
            except AudioError as exc:
                self.core.device_error(
                    f"{exc}; retrying every {self._listen.device_retry_s:g} s")
                self._stop.wait(self._listen.device_retry_s)

    def _run(self) -> None:
        silent_reads = 0
        overflows = underflows = 0
        while not self._stop.is_set():
            mic = self._mic
            if mic is None or (silent_reads > 10 and not mic.alive):
                self._reopen_mic()
                silent_reads = 0
                continue
            item = mic.read_timed(timeout=0.2)
            if item is None:
                silent_reads += 1
                continue
            block, captured_at = item
            silent_reads = 0
            self._check_speaker()
            if mic.overflows != overflows:
                log.warning("the microphone delivered faster than it was read: %d blocks lost",
                            mic.overflows - overflows)
                overflows = mic.overflows
            speaker = self.speaker
            if speaker is not None and speaker.underflows != underflows:
                log.warning("the speaker ran dry %d times: SARAi's voice had gaps (a busy CPU?)",
                            speaker.underflows - underflows)
                underflows = speaker.underflows
            for frame, at in timed_frames(block, captured_at, self.front.frame_ms):
                self.front.hear(frame, at)
            self._size_blocks(mic, speaker)

    def _size_blocks(self, mic: MicSource, speaker: SpeakerSink | None) -> None:
        """Small blocks while an answer plays (barge-in must be quick), large ones while
        only listening (fewer wakeups). A change opens a new stream, and the switch may lose
        or repeat a little sound (PulseAudio, after the first change: 30 ms lost when blocks
        shrink, 60-90 ms repeated when they grow) and moves the microphone's timestamps by as
        much: the echo canceller then looks for SARAi's voice where it no longer is (it came
        back about 30 ms away after blocks grew as a turn ended and shrank again as its
        answer began, and AEC3 let SARAi's voice through for seconds). So blocks grow only once
        the conversation has gone quiet, when the speaker's stream stops for want of
        anything to play (`SpeakerSink.SLEEP_AFTER_S`), and never while the user talks (an
        answer they talked over ends in the middle of their words)."""
        if self.front.busy():
            mic.set_block_ms(self.front.frame_ms)
        elif not self.front.user_talking and (speaker is None or speaker.asleep):
            mic.set_block_ms(self._audio.mic_block_ms)
