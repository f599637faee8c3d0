"""Speaking a reply while it is still being written: sentences in, audio on the sink."""

from __future__ import annotations

import logging
import queue
import threading
import time

from sarai.audio.devices import AudioSink
from sarai.audio.tts import Voice
from sarai.models.backend import CancelToken

log = logging.getLogger(__name__)


class SpeechWorker:
    """Synthesises sentences in order on its own thread and queues them on the sink."""

    def __init__(self, voice: Voice, sink: AudioSink, t0: float, cancel: CancelToken) -> None:
        self._voice = voice
        self._sink = sink
        self._t0 = t0
        self._cancel = cancel
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.first_audio_ms: float | None = None
        self.spoken: list[str] = []
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="tts", daemon=True)
        self._thread.start()

    def say(self, sentence: str) -> None:
        self._queue.put(sentence)

    def finish(self) -> None:
        """Wait until every sentence said so far has been synthesised and queued."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (sentence := self._queue.get()) is not None:
            if self.error is not None or self._cancel.cancelled:
                continue
            try:
                audio = self._voice.synthesize(sentence)
                if len(audio) and not self._cancel.cancelled:
                    self._sink.play(audio, self._voice.sample_rate)
                    self.spoken.append(sentence)
                    if self.first_audio_ms is None:
                        self.first_audio_ms = round((time.perf_counter() - self._t0) * 1000, 1)
            except Exception as exc:  # keep generating text even if speech fails
                log.error("speech synthesis failed: %s", exc)
                self.error = exc
