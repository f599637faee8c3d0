"""The first piece of an answer is synthesised before the model writes on: nothing can be heard
before it, and on a two-core machine the model and the voice slow each other down."""

from __future__ import annotations

import threading
import time

import numpy as np
from harness_parts import router

from sarai.daemon.conversation.harness import ScriptedModels
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.turn import Assistant


class _SlowVoice:
    """Takes 0.3 s per piece and says when each synthesis began and ended."""

    name = "slow"
    sample_rate = 16000

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []

    def synthesize(self, text: str) -> np.ndarray:
        began = time.monotonic()
        time.sleep(0.3)
        self.spans.append((text, began, time.monotonic()))
        return np.full(1600, 1000, np.int16)


class _Voices:
    def __init__(self, voice: _SlowVoice) -> None:
        self._voice = voice

    def voice(self, language: str | None = None) -> _SlowVoice:  # noqa: ARG002
        return self._voice


class _Sink:
    def __init__(self) -> None:
        self.played = 0
        self.done = threading.Event()

    def play(self, samples, sample_rate, on_heard=None) -> None:  # noqa: ARG002
        self.played += 1

    def finish(self) -> None:
        self.done.set()


def test_the_model_waits_for_the_first_piece_then_writes_on_while_it_is_spoken(tmp_path):
    pulled: list[float] = []
    models = ScriptedModels(
        reply=lambda q: "Hello there. This is the rest of a reply that goes on for a while.",
        on_chunk=lambda: pulled.append(time.monotonic()))
    voice = _SlowVoice()
    assistant = Assistant(system_prompt="Be brief.", registry=models,  # type: ignore[arg-type]
                          router=router(tmp_path / "router-cache"), memory=Conversation(4, 600),
                          voices=_Voices(voice))  # type: ignore[arg-type]
    sink = _Sink()
    rec = assistant.text_turn("Say hello to me, please.", sink)  # type: ignore[arg-type]
    assert rec.reply.startswith("Hello there. This is the rest")
    (first, first_began, first_ended), (rest, rest_began, _) = voice.spans
    assert first == "Hello there." and rest.startswith("This is the rest")
    # Two words make the first piece; the third is written only once it has been synthesised.
    assert pulled[1] <= first_began and pulled[2] >= first_ended
    # The rest is written while the first piece is being spoken, not piece by piece.
    assert pulled[-1] < rest_began + 0.3
    assert sink.played == 2
