"""Speaking a reply while it is still being written: sentences in, audio on the sink.

A spoken answer is kept to speaking length (`SpokenLimits`): after so many sentences or
seconds the voice stops, while the whole reply stays in the turn record and the memory.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from sarai.audio.playback import AudioSink
from sarai.audio.tts import Voice
from sarai.daemon.conversation.stages import Stage, StageClock
from sarai.models.backend import CancelToken

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpokenLimits:
    max_sentences: int = 0  # 0 = no limit
    max_s: float = 0.0  # seconds of speech; 0 = no limit


class SpeechWorker:
    """Synthesises sentences in order on its own thread and queues them on the sink."""

    def __init__(self, voice: Voice, sink: AudioSink, cancel: CancelToken, marks: StageClock,
                 limits: SpokenLimits = SpokenLimits()) -> None:
        self._voice = voice
        self._sink = sink
        self._cancel = cancel
        self._marks = marks
        self._limits = limits
        self._queue: queue.Queue[tuple[str, bool] | None] = queue.Queue()
        self._sentences = 0
        self._seconds = 0.0
        self.spoken: list[str] = []  # the answer's sentences given to the voice
        self.limited = False  # the rest of the reply was not spoken (too long to listen to)
        self.filler_said = False
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="tts", daemon=True)
        self._thread.start()

    def say(self, sentence: str, *, filler: bool = False) -> None:
        self.filler_said = self.filler_said or filler
        self._queue.put((sentence, filler))

    def finish(self) -> None:
        """Wait until every sentence said so far has been synthesised and queued."""
        self._queue.put(None)
        self._thread.join()

    def _within_limits(self) -> bool:
        lim = self._limits
        return not ((lim.max_sentences and self._sentences >= lim.max_sentences)
                    or (lim.max_s and self._seconds >= lim.max_s))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            sentence, filler = item
            self._speak(sentence, filler)

    def _speak(self, sentence: str, filler: bool) -> None:
        if self.error is not None or self._cancel.cancelled:
            return
        if not filler and not self._within_limits():
            self.limited = True
            return
        began = self._marks.now()
        try:
            audio = self._voice.synthesize(sentence)
        except Exception as exc:  # keep generating text even if speech fails
            log.error("speech synthesis failed: %s", exc)
            self.error = exc
            return
        # A barge-in during synthesis has advanced the speaker's generation: the sink
        # drops this audio itself, so nothing of a cancelled answer is heard.
        if not len(audio) or self._cancel.cancelled:
            return
        done = self._marks.now()
        log.debug("%s of %d characters synthesised %.0f ms after the turn's start, in %.0f ms",
                  "filler" if filler else f"piece {self._sentences + 1}", len(sentence),
                  self._marks.elapsed_ms(done), 1000 * (done - began))
        self._sink.play(audio, self._voice.sample_rate, self._heard(filler))
        if not filler:
            self._sentences += 1
            self._seconds += len(audio) / self._voice.sample_rate
            self.spoken.append(sentence)

    def _heard(self, filler: bool):
        marks = self._marks

        def heard(at: float) -> None:
            marks.point(Stage.FIRST_AUDIO, at)
            if not filler:
                marks.point(Stage.FIRST_ANSWER_AUDIO, at)

        return heard
