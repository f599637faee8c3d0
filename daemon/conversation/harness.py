"""Running and watching the voice loop: in memory on a virtual clock, or live.

`VoiceHarness` is the whole conversation — front end, echo canceller, core, runner, speaker —
with the sound devices replaced by memory: `feed()` plays audio into the "microphone" frame by
frame while virtual time moves, the speaker plays in the same virtual time, and what it plays
comes back into the microphone through an echo path (audio.room: nothing, a delay, or a
simulated room). Everything runs on the caller's thread, so a run is the same every time.

`EventProbe` reads a conversation's events, from either that harness or a live loop; the
tests and `sarai bench voice` wait for turns and states with it.

`ScriptedModels` stands in for the model registry where what is measured is not the model
(`sarai bench room`, the device-free tests): every tier answers with `reply(question)`, a few
words at a time, as a model streams.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from sarai.audio.echo import EchoCanceller, EchoTiming
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.room import DelayLine, EchoPath, Headphones
from sarai.audio.settings import VadSettings
from sarai.audio.stream_resample import StreamResampler
from sarai.audio.virtual import MemorySpeaker, VirtualClock
from sarai.daemon.config import EchoMode, ListenSettings
from sarai.daemon.conversation.core import ConversationCore
from sarai.daemon.conversation.frontend import FrontEnd
from sarai.daemon.conversation.runner import InlineRunner
from sarai.daemon.conversation.turn import Assistant
from sarai.daemon.events import Event, EventKind, ListenMode, State
from sarai.models.backend import CancelToken, Message


@dataclass(frozen=True)
class _Settings:
    max_tokens: int
    temperature: float = 0.0


@dataclass(frozen=True)
class _Support:
    kinds: frozenset = frozenset()
    why_not: str | None = None


@dataclass(frozen=True)
class _Resolved:
    model: str


@dataclass
class ScriptedModels:
    """Stand-in for the model registry and its backends: every tier answers with
    `reply(question)`, a few words at a time; `on_chunk` runs as each is sent, and every
    prompt is kept in `prompts`. `think_s`: how long it takes to start an answer (virtual
    time, in the VoiceHarness, which sets `sleep`)."""

    reply: Callable[[str], str] = lambda q: f"You said {q}"
    on_chunk: Callable[[], None] | None = None
    prompts: list[list[Message]] = field(default_factory=list)
    name: str = "scripted"
    max_tokens: int = 200
    think_s: float = 0.0
    sleep: Callable[[float], None] | None = None

    def is_loaded(self, tier, **kw) -> bool:  # noqa: ARG002
        return True

    @contextlib.contextmanager
    def borrow(self, tier) -> Iterator[ScriptedModels]:  # noqa: ARG002
        yield self

    def backend(self, tier, **kw):  # noqa: ARG002
        return self

    def resolve(self, tier) -> _Resolved:  # noqa: ARG002
        return _Resolved(self.name)

    def settings(self, tier) -> _Settings:  # noqa: ARG002
        return _Settings(self.max_tokens)

    def media(self, tier, **kw) -> _Support:  # noqa: ARG002
        return _Support()

    def warm_up(self, tier, **kw) -> None:  # noqa: ARG002
        pass

    def starter_notice(self) -> None:
        return None

    def close(self) -> None:
        pass

    def stream(self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0,
               cancel: CancelToken | None = None) -> Iterator[str]:  # noqa: ARG002
        self.prompts.append(list(messages))
        if max_tokens <= 1:
            return  # priming / warm-up: reading the prompt only
        if self.think_s and self.sleep is not None:
            self.sleep(self.think_s)
        for word in self.reply(messages[-1].content).split(" "):
            if cancel is not None and cancel.cancelled:
                return
            if self.on_chunk is not None:
                self.on_chunk()
            yield word + " "


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

    `echo_path`: how the speaker's sound comes back into the microphone (audio.room); by
    default a plain one, `echo_gain` loud and `echo_delay_s` late (0 gain: headphones).
    `canceller`: the echo canceller the front end uses (a real one by default).
    `speaker_rate`, `speaker_latency_s`: the rate the in-memory speaker plays at, and how long
    after a block is handed over it is heard (the real speaker's buffer is 80 ms)."""

    def __init__(self, assistant: Assistant, listen: ListenSettings, vad: VadSettings, *,
                 mode: ListenMode | None = None, echo_gain: float = 0.0,
                 echo_delay_s: float = 0.05, second_opinion: bool = False,
                 echo_path: EchoPath | None = None, canceller: EchoCanceller | None = None,
                 speaker_rate: int = MemorySpeaker.RATE,
                 speaker_latency_s: float = 0.02) -> None:
        self.clock = VirtualClock()
        self.probe = EventProbe(advance=self.silence)
        runner = InlineRunner(self.clock)
        if isinstance(assistant.registry, ScriptedModels):
            assistant.registry.sleep = runner.sleep  # its thinking time passes in this clock
        self.core = ConversationCore(assistant, listen, self.probe, clock=self.clock,
                                     inline=runner, mode=mode)
        self.echo = canceller or EchoCanceller(
            EchoTiming(warmup_s=listen.echo_warmup_s, deaf_s=listen.echo_deaf_s),
            cancel=listen.echo_cancel in (EchoMode.AUTO, EchoMode.WEBRTC))
        self.speaker = MemorySpeaker(self.clock, latency_s=speaker_latency_s,
                                     on_played=self.echo.played, rate=speaker_rate,
                                     on_dropped=self.echo.dropped)
        self.front = FrontEnd(self.core, vad, listen, self.echo, self.speaker,
                              use_second_opinion=second_opinion)
        self.core.attach_output(self.speaker)
        if echo_path is None:
            echo_path = DelayLine(echo_gain, echo_delay_s) if echo_gain else Headphones()
        self.echo_path = echo_path
        self._frame = SAMPLE_RATE * self.front.frame_ms // 1000
        self._to_16k = StreamResampler(speaker_rate)
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
            played = self._to_16k.push(self.speaker.advance(self.clock.now()))
            echo = self.echo_path.hear(played, n)
            frame = np.clip(samples[i : i + n].astype(np.float64) + echo, -32768, 32767)
            frame = np.round(frame).astype(np.int16)
            self.mic.append(frame)
            self.front.hear(frame, self.clock.now())
            self.core.pump()
            if on_frame is not None:
                on_frame()

    def silence(self, seconds: float) -> None:
        self.feed(np.zeros(int(seconds * SAMPLE_RATE), np.int16))


class SpeakerWatch:
    """Called after every frame of a harness run (`feed(..., on_frame=watch)`): when the
    speaker paused and when an answer was stopped (its playback generation moved on)."""

    def __init__(self, h: VoiceHarness) -> None:
        self._h = h
        self._paused = False
        self._generation = h.speaker.queue.generation
        self.pauses: list[float] = []
        self.stops: list[float] = []

    def __call__(self) -> None:
        q = self._h.speaker.queue
        if q.paused and not self._paused:
            self.pauses.append(self._h.now)
        self._paused = q.paused
        if q.generation != self._generation:
            self._generation = q.generation
            self.stops.append(self._h.now)
