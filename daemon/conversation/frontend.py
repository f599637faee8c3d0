"""The microphone's front end: what the user said, and when, frame by frame.

Each VAD frame, stamped with when it was captured, goes through: the echo canceller (which
sees every frame, so its two streams stay together), the listening mode (muted, push-to-talk),
a gate that silences what is left of SARAi's own voice while it may be in the frame, barge-in
detection, and the VAD segmenter. What comes out are messages for the conversation core —
speech started or stopped, a pause, the end likely (a finished turn's pause has lasted
`complete_silence_ms`), the user going on, the end of a turn, a barge-in — in the order heard.

It reads the core's `view` (the mode, whether an answer is being heard) and never changes the
core's state; the one thing it does directly is pause and resume the speaker when the user
may be talking over it, because that must happen within a frame or two.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import webrtcvad

from sarai.audio.echo import EchoCanceller
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.playback import Output
from sarai.audio.settings import VadSettings
from sarai.audio.vad import SegmentKind, Utterance, UtteranceSegmenter, VadState, second_opinion
from sarai.daemon.config import ListenSettings
from sarai.daemon.conversation import messages as m
from sarai.daemon.conversation.barge_in import BargeAction, BargeInDetector, BargeInTiming
from sarai.daemon.conversation.core import ConversationCore, View
from sarai.daemon.events import ListenMode

log = logging.getLogger(__name__)

# What the canceller leaves of SARAi's voice is judged against the loudest the microphone heard
# this long back: the room's reverberation keeps an echo going for a few hundred ms after the
# sound that caused it, and AEC3 lets more of it through as it dies away.
_ECHO_WINDOW_MS = 300
# Speech that begins this soon after SARAi's voice or its echo may have been heard is checked
# against what SARAi said (see ConversationCore): an echo that came back later than expected,
# or a residue the gate let through, is SARAi's own words.
_OWN_VOICE_GRACE_S = 1.0
# After SARAi pauses for a possible barge-in, AEC3 keeps holding down what it hears for up to
# a few hundred ms (it expects the loudspeaker's echo to ring on): the candidate gets that long
# before the answer resumes.
_PAUSED_FADE_MS = 450
# Once the speaker has gone quiet for a candidate, the room still sends back, for this long,
# the echo of what was heard just before (the devices' latency on both sides, and the
# reverberation). That echo is no evidence of the user: counted, it would confirm a candidate
# that was SARAi's own voice all along (seen under a busy CPU, when the canceller has lost
# the echo's timing for a moment and lets it through). The echo of the 48 kHz room test came
# back 86-115 ms after the speaker's timestamps; 0.2 s cost a 0.75 s word at -10 dB in
# `sarai bench room`'s office. Voiced frames then are held, and count only if the voice goes
# on after them (see daemon.conversation.barge_in).
_IN_FLIGHT_S = 0.15


def _rms(block: np.ndarray) -> float:
    return float(np.sqrt(np.mean(block.astype(np.float64) ** 2))) if len(block) else 0.0


class _RoomNoise:
    """The room's own noise, from recent quiet frames heard while SARAi and the user were both
    silent: what the segmenter hears where the echo gate closes. webrtcvad adapts to what it
    is given, and after seconds of digital silence it takes the room's plain noise for speech
    once the gate opens again."""

    def __init__(self, keep: int = 33) -> None:
        self._frames: deque[np.ndarray] = deque(maxlen=keep)
        self._levels: deque[float] = deque(maxlen=200)
        self._floor: float | None = None
        self._heard = 0
        self._next = 0

    def hear(self, frame: np.ndarray, level: float) -> None:
        self._levels.append(level)
        self._heard += 1
        if self._floor is None or self._heard % 10 == 0:
            self._floor = float(np.percentile(self._levels, 20))
        if level <= 1.5 * self._floor:  # the room alone, nobody talking
            self._frames.append(frame.copy())

    def fill(self, n: int) -> np.ndarray:
        if not self._frames:
            return np.zeros(n, np.int16)
        self._next = (self._next + 1) % len(self._frames)
        frame = self._frames[self._next]
        return frame[:n] if len(frame) >= n else np.resize(frame, n)


class FrontEnd:
    """Feed it VAD frames with their capture times (`hear`); it posts to the core."""

    def __init__(self, core: ConversationCore, vad: VadSettings, listen: ListenSettings,
                 echo: EchoCanceller, speaker: Output | None = None, *,
                 use_second_opinion: bool = True) -> None:
        self._core = core
        self._listen = listen
        self._echo = echo
        self.speaker = speaker
        self._seg = UtteranceSegmenter(
            vad, pause_ms=listen.speculate_pause_ms or None,
            second_opinion=second_opinion(vad) if use_second_opinion else None)
        self._barge = BargeInDetector(BargeInTiming(
            frame_ms=vad.frame_ms, pause_ms=listen.barge_in_pause_ms,
            confirm_ms=listen.barge_in_confirm_ms, paused_fade_ms=_PAUSED_FADE_MS))
        # A VAD of its own for barge-in, fed the canceller's output as it is: the segmenter's
        # sees silence wherever the echo gate closed, which upsets its idea of the noise.
        self._barge_vad = webrtcvad.Vad(vad.aggressiveness)
        self._heard = deque([0.0], maxlen=max(1, _ECHO_WINDOW_MS // vad.frame_ms))  # levels
        self._room = _RoomNoise()
        self._barged: int | None = None  # the answer this front end reported talked over
        self._cut: int | None = None  # …while nothing has been said since it was cut
        self._releases = 0  # push-to-talk releases seen
        self._speaking = False
        self._live = False  # audio has arrived since the microphone (re)opened
        self._busy_at = float("-inf")  # capture time of the last frame heard while busy
        self._near_answer = False  # the speech now heard began while SARAi may be heard
        self._told_end: int | None = None  # the speculative turn told its end is likely

    @property
    def frame_ms(self) -> int:
        return self._seg.frame_ms

    def busy(self, at: float | None = None) -> bool:
        """An answer is being heard, or its echo may still be in audio captured at `at`.
        A speculative start is not busy: the user may well go on talking."""
        return self._core.view.answering is not None or self._echo.active(at)

    @property
    def user_talking(self) -> bool:
        """The user is talking, or pausing inside an utterance that has not ended yet."""
        return self._speaking

    def hear(self, frame: np.ndarray, captured_at: float) -> None:
        """One VAD frame of microphone audio, whose last sample was captured at `captured_at`."""
        if not self._live:
            self._live = True
            self._post(m.MicLive(True))
        cleaned = self._echo.clean(frame, captured_at)
        level = _rms(frame)
        self._heard.append(level)
        view = self._core.view
        if view.mode is ListenMode.MUTED or (view.mode is ListenMode.PUSH and not view.pushing):
            if view.push_releases != self._releases:
                self._releases = view.push_releases
                for utt in self._seg.flush():  # releasing ends the turn at once
                    self._post(m.Ended(utt))
            self._seg.reset()
            self._set_speaking(False)
            return
        self._releases = view.push_releases
        busy = self.busy(captured_at)
        if busy:
            self._busy_at = captured_at
        if not busy and self._seg.state is VadState.SILENCE:
            # Only between turns: quiet moments inside speech are the speaker's, and replayed
            # under an answer they sound like speech again.
            self._room.hear(frame, level)
        if busy:
            if not self._listen.barge_in:
                self._seg.reset()  # half duplex: what is heard while answering is not a turn
                self._set_speaking(False)
                return
            passed = self._passes_gate(cleaned, captured_at)
            if not self._quiet_for_the_user(captured_at, view):
                frame = cleaned if passed else self._room.fill(len(cleaned))
        else:
            passed = True
        self._watch_barge_in(cleaned, passed, captured_at, busy)
        if self._seg.state is VadState.SILENCE:
            self._near_answer = captured_at - self._busy_at < _OWN_VOICE_GRACE_S
        for ev in self._seg.push_events(frame, captured_at):
            if ev.kind is SegmentKind.PAUSE and ev.utterance is not None:
                self._post(m.Paused(ev.utterance, self._near_answer))
            elif ev.kind is SegmentKind.RESUME:
                self._post(m.Resumed())
            elif ev.kind is SegmentKind.END and ev.utterance is not None:
                self._on_end(ev.utterance)
        self._follow_early_end(self._core.view)
        self._set_speaking(self._seg.state is VadState.SPEECH)

    def _post(self, msg: m.Message) -> None:
        self._core.post(msg)

    def _set_speaking(self, speaking: bool) -> None:
        if speaking != self._speaking:
            self._speaking = speaking
            self._post(m.SpeechState(speaking))
            if self.speaker is not None:
                # An answer may follow: an idle speaker gets ready when the user starts, and
                # stays ready from when they stop, however long they talked.
                self.speaker.wake()

    def _follow_early_end(self, view: View) -> None:
        """The speculative turn reads and sounds finished and the pause has lasted
        `complete_silence_ms`: tell the core, which ends the turn as soon as its answer has
        something to say. The utterance stays open here until then, so a user who goes on
        before a word of the answer is heard carries on the same turn; once the core has
        ended it, what is left of its pause is forgotten (its turn is being answered)."""
        told = self._told_end
        if told is not None and view.speculative != told:
            self._told_end = None
            if view.committed == told and self._seg.state is VadState.SPEECH:
                self._seg.reset()
            return
        ms = self._listen.complete_silence_ms
        if (told is None and ms > 0 and self._seg.state is VadState.SPEECH
                and self._seg.silence_ms >= ms and view.speculative is not None
                and view.speculative_complete):
            self._told_end = view.speculative
            self._post(m.EndLikely(view.speculative))

    def _on_end(self, utt: Utterance) -> None:
        view = self._core.view
        if view.answering is not None and view.answering != self._barged:
            # An answer is being heard and nobody talked over it: this is its own echo.
            log.info("ignored %.1f s of sound heard during the answer", utt.duration_s)
            return
        self._post(m.Ended(utt, self._near_answer))

    def _quiet_for_the_user(self, captured_at: float, view: View) -> bool:
        """SARAi went quiet for the user talking over it (paused for them, or the answer
        they interrupted), and the echo of all it handed to the speaker has come back
        already: the turn hears the microphone as it is, as between answers. AEC3's output
        is not used then: for a few hundred ms after the speaker goes quiet it holds down
        what it hears, the user included (through the PulseAudio loopback, the "is your" of
        "What is your name?" came out up to 19 dB down, below the gate, and the turn was
        heard as "Uh, your name."). What decides a barge-in is not changed by this."""
        if self._cut is not None and view.answering not in (None, self._cut):
            self._cut = None  # SARAi answers again
        if not (self._barge.paused or self._cut is not None):
            return False
        frame_start = captured_at - self._seg.frame_ms / 1000
        return self._echo.quiet_for(frame_start) >= _IN_FLIGHT_S

    def _passes_gate(self, cleaned: np.ndarray, captured_at: float) -> bool:
        """Whether the canceller's output may be the user, not what is left of SARAi's voice
        (where it is not, the segmenter hears the room's noise instead).

        What the canceller leaves of the user is loud enough and a fair share of what the
        microphone heard lately; what it leaves of SARAi is a faint residue far below the
        echo that carried it. A canceller still learning the room leaves much more: until it
        has settled, the user must be louder and a larger share (the warm-up rule). While the
        canceller has nothing to cancel with (its reference stalled), nothing heard over
        SARAi's voice counts.
        """
        if self._echo.blind(captured_at):
            return False
        lst = self._listen
        if self._echo.converging:
            min_rms, share = lst.barge_in_warmup_min_rms, lst.barge_in_warmup_echo_ratio
        else:
            min_rms, share = lst.barge_in_min_rms, lst.barge_in_echo_ratio
        floor = max(min_rms, share * max(self._heard))
        return _rms(cleaned) >= floor

    def _watch_barge_in(self, cleaned: np.ndarray, loud: bool, captured_at: float,
                        busy: bool) -> None:
        """Pause the answer as soon as the user seems to talk over it, report it once that is
        sure, resume it if it was not the user (see daemon.conversation.barge_in). `cleaned`:
        the canceller's output; `loud`: it passed the echo gate."""
        speaker, answering = self.speaker, self._core.view.answering
        if not busy or answering is None or answering == self._barged or speaker is None:
            if self._barge.reset() is BargeAction.RESUME and speaker is not None:
                speaker.resume()
            return
        n = SAMPLE_RATE * self._seg.frame_ms // 1000
        if len(cleaned) < n:
            return  # a remainder shorter than a frame: nothing to judge
        speech = self._barge_vad.is_speech(cleaned[:n].tobytes(), SAMPLE_RATE)
        voiced = loud and speech
        in_flight = False
        if voiced and self._barge.paused:
            stopped = speaker.stopped_at
            frame_start = captured_at - self._seg.frame_ms / 1000
            # The echo of the words heard before the pause may be in it.
            in_flight = stopped is not None and frame_start < stopped + _IN_FLIGHT_S
        action = self._barge.feed(voiced, captured_at, in_flight=in_flight)
        if action is BargeAction.PAUSE:
            speaker.pause()
        elif action is BargeAction.RESUME:
            speaker.resume()
            log.debug("barge-in candidate faded; answer resumed")
        elif action is BargeAction.INTERRUPT:
            onset = self._barge.onset
            self._barged = self._cut = answering
            self._barge.reset()
            self._post(m.BargeIn(answering, onset if onset is not None else captured_at))

    def flush(self) -> None:
        """The end of the input: an utterance still open ends here."""
        for utt in self._seg.flush():
            self._on_end(utt)

    def device_lost(self) -> None:
        """The microphone went away: nobody is left to confirm a paused barge-in, and
        nothing is heard until it is back."""
        if self._barge.reset() is BargeAction.RESUME and self.speaker is not None:
            self.speaker.resume()
        if self._live:
            self._live = False
            self._post(m.MicLive(False))
