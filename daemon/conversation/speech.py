"""Speaking a reply while it is still being written: sentences in, audio on the sink.

A spoken answer is kept to speaking length (`SpokenLimits`): after so many sentences or
seconds the voice stops, while the whole reply stays in the turn record and the memory.

The first piece of an answer is what the user waits for: while it is synthesised, the model
that writes the reply holds back (`hold_for_first_piece`), since on a machine with few cores
the two would share the CPU and the first sound would come later. The rest of the reply is
written while the first piece plays; a first piece too short to cover that ("Of course!") is not
waited for, so no gap opens after it (in a gap the room's echo of the next piece can sound
like the user starting to talk).
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


# The longest the reply's writer holds back for the first piece (Piper takes 100-300 ms).
FIRST_PIECE_HOLD_S = 1.0
# Only for a first piece this long (about 1.3 s of speech: time to write the next one).
FIRST_PIECE_HOLD_MIN_CHARS = 20


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
        self._first_said = False
        self._first_out = threading.Event()  # the first answer piece is synthesised (or dropped)
        self._thread = threading.Thread(target=self._run, name="tts", daemon=True)
        self._thread.start()

    def say(self, sentence: str, *, filler: bool = False) -> None:
        self.filler_said = self.filler_said or filler
        if not filler and not self._first_said:
            self._first_said = True
            if len(sentence.strip()) < FIRST_PIECE_HOLD_MIN_CHARS:
                self._first_out.set()  # over before the next piece could be ready: no hold
        self._queue.put((sentence, filler))

    def hold_for_first_piece(self, timeout: float = FIRST_PIECE_HOLD_S) -> None:
        """Block while the answer's first piece (if `FIRST_PIECE_HOLD_MIN_CHARS` long) has been
        said but is not yet synthesised, at most `timeout` seconds; return at once before that
        piece and after it."""
        if self._first_said and not self._first_out.is_set():
            self._first_out.wait(timeout)

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
            try:
                self._speak(sentence, filler)
            finally:
                if not filler:
                    self._first_out.set()

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
