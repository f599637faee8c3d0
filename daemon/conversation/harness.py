"""Running and watching the voice loop: in memory on a virtual clock, or live.

`VoiceHarness` is the whole conversation — front end, core, runner, speaker — with the sound
devices replaced by memory: `feed()` plays audio into the "microphone" frame by frame while
virtual time moves, the speaker plays in the same virtual time, and what it plays can come
back into the microphone as an echo. Everything runs on the caller's thread, so a run is the
same every time.

`EventProbe` reads a conversation's events, from either that harness or a live loop; the
tests and `sarai bench voice` wait for turns and states with it.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from sarai.audio.echo import EchoGate
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.settings import VadSettings
from sarai.audio.virtual import MemorySpeaker, VirtualClock
from sarai.daemon.config import ListenSettings
from sarai.daemon.conversation.core import ConversationCore
from sarai.daemon.conversation.frontend import FrontEnd
from sarai.daemon.conversation.turn import Assistant
from sarai.daemon.events import Event, EventKind, ListenMode, State


class EventProbe:
    """Collects a conversation's events as they come (thread-safe) and answers questions
    about them. `settle` (optional) is called while waiting, so an in-memory harness can
    move time along."""

    def __init__(self, advance: Callable[[float], None] | None = None) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self._advance = advance

    def __call__(self, ev: Event) -> None:
        self._queue.put(ev)

    def _take(self, timeout: float) -> Event | None:
        if self._advance is not None:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                self._advance(timeout)
                return None
        else:
            try:
                ev = self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
        self.seen.append(ev)
        return ev

    def turn(self, timeout: float = 90) -> dict:
        """The next turn record; AssertionError if none comes in time."""
        deadline = time.monotonic() + timeout
        waited = 0.0
        while time.monotonic() < deadline and waited < timeout:
            ev = self._take(0.3)
            if ev is None:
                waited += 0.3 if self._advance is not None else 0.0
                continue
            if ev.kind is EventKind.TURN:
                return ev.data
        raise AssertionError(f"no turn within {timeout} s; states: {self.states()}")

    def no_turn(self, seconds: float) -> None:
        """AssertionError if a turn comes within `seconds`."""
        deadline = time.monotonic() + seconds
        waited = 0.0
        while time.monotonic() < deadline and waited < seconds:
            ev = self._take(0.3)
            if ev is None:
                waited += 0.3 if self._advance is not None else 0.0
                continue
            assert ev.kind is not EventKind.TURN, f"unexpected turn: {ev.data}"

    def drain(self) -> None:
        """Take what has arrived without waiting."""
        while True:
            try:
                self.seen.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def states(self) -> list[str]:
        self.drain()
        return [e.data["state"] for e in self.seen if e.kind is EventKind.STATE]

    def turns(self) -> list[dict]:
        self.drain()
        return [e.data for e in self.seen if e.kind is EventKind.TURN]

    def phases(self, turn_id: int | None = None) -> list[str]:
        self.drain()
        return [e.data["phase"] for e in self.seen if e.kind is EventKind.PHASE
                and (turn_id is None or e.data["turn"] == turn_id)]


class VoiceHarness:
    """The voice loop in memory on a virtual clock (see the module comment).

    `echo_gain` and `echo_delay_s`: how loud, and how late, the speaker's sound comes back
    into the microphone (0: headphones)."""

    def __init__(self, assistant: Assistant, listen: ListenSettings, vad: VadSettings, *,
                 mode: ListenMode | None = None, echo_gain: float = 0.0,
                 echo_delay_s: float = 0.05, second_opinion: bool = False) -> None:
        self.clock = VirtualClock()
        self.probe = EventProbe(advance=self.silence)
        self.core = ConversationCore(assistant, listen, self.probe, clock=self.clock,
                                     inline=True, mode=mode)
        self.echo = EchoGate()
        self.speaker = MemorySpeaker(self.clock, on_played=self.echo.played)
        self.front = FrontEnd(self.core, vad, listen, self.echo, self.speaker,
                              use_second_opinion=second_opinion)
        self.core.attach_output(self.speaker)
        self.echo_gain = echo_gain
        self._frame = SAMPLE_RATE * self.front.frame_ms // 1000
        delay = int(round((echo_delay_s + self.speaker.latency_s) * SAMPLE_RATE))
        self._air: deque[np.ndarray] = deque([np.zeros(delay, np.float32)])
        self._air_len = delay
        self.mic: list[np.ndarray] = []  # everything the microphone heard
        self.core.pump()

    @property
    def now(self) -> float:
        return self.clock.now()

    @property
    def state(self) -> State:
        return self.core.state

    def feed(self, samples: np.ndarray, *, on_frame: Callable[[], None] | None = None) -> None:
        """Play 16 kHz int16 audio into the microphone, one VAD frame at a time, while virtual
        time moves on, the speaker plays and the conversation reacts."""
        samples = samples.astype(np.int16, copy=False)
        n = self._frame
        pad = (-len(samples)) % n
        if pad:
            samples = np.concatenate([samples, np.zeros(pad, np.int16)])
        for i in range(0, len(samples), n):
            self.clock.advance(n / SAMPLE_RATE)
            played = self.speaker.advance(self.clock.now())
            echo = self._through_the_air(played, n)
            frame = np.clip(samples[i : i + n].astype(np.float32) + echo, -32768, 32767)
            frame = frame.astype(np.int16)
            self.mic.append(frame)
            self.front.hear(frame, self.clock.now())
            self.core.pump()
            if on_frame is not None:
                on_frame()

    def silence(self, seconds: float) -> None:
        self.feed(np.zeros(int(seconds * SAMPLE_RATE), np.int16))

    def _through_the_air(self, played: np.ndarray, n: int) -> np.ndarray:
        """The speaker's sound as the microphone hears it: delayed and scaled."""
        self._air.append(played.astype(np.float32) * self.echo_gain)
        self._air_len += len(played)
        out = np.zeros(n, np.float32)
        if self._air_len < n:
            return out
        taken = 0
        while taken < n:
            head = self._air[0]
            take = min(n - taken, len(head))
            out[taken : taken + take] = head[:take]
            taken += take
            if take == len(head):
                self._air.popleft()
            else:
                self._air[0] = head[take:]
        self._air_len -= n
        return out
