"""Where audio comes from and goes to: the microphone, the speaker, or WAV files."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE, resample, write_wav

log = logging.getLogger(__name__)


class AudioSink(Protocol):
    """Something SARAi speaks into."""

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        """Queue int16 mono audio; returns without waiting for it to be heard."""

    def drain(self) -> None:
        """Wait until everything queued has been played or stored."""

    def close(self) -> None: ...


class WavSink:
    """Collects everything spoken and writes one WAV file on close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parts: list[np.ndarray] = []
        self._rate: int | None = None

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        if self._rate is None:
            self._rate = sample_rate
        self._parts.append(resample(samples, sample_rate, self._rate))

    def gap(self, seconds: float) -> None:
        """Silence between answers to different utterances."""
        if self._rate is not None:
            self._parts.append(np.zeros(int(self._rate * seconds), dtype=np.int16))

    def drain(self) -> None:
        pass

    @property
    def samples(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.int16)

    def close(self) -> None:
        write_wav(self.path, self.samples, self._rate or SAMPLE_RATE)


class HeldSink:
    """Holds audio back until `release()`, then passes it on; `discard()` drops it.

    Used for speculative turns: work starts at a short pause, but nothing is heard unless
    the pause turns out to be the end of the turn. A sink nobody decides about within
    `expire_s` (say, listening was muted meanwhile) discards itself when drained.
    """

    def __init__(self, sink: AudioSink, expire_s: float | None = None) -> None:
        self._sink = sink
        self._held: list[tuple[np.ndarray, int]] = []
        self._lock = threading.Lock()
        self._decided = threading.Event()
        self._released = False
        self._deadline = None if expire_s is None else time.perf_counter() + expire_s
        # When the first audio reached the real sink (perf_counter): "first audio out".
        self.first_out_at: float | None = None

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        with self._lock:
            if not self._released:
                if not self._decided.is_set():
                    self._held.append((samples, sample_rate))
                return
            if self.first_out_at is None:
                self.first_out_at = time.perf_counter()
        self._sink.play(samples, sample_rate)

    def release(self) -> None:
        with self._lock:
            self._released = True
            held, self._held = self._held, []
            self._decided.set()
            if held:
                self.first_out_at = time.perf_counter()
        for samples, rate in held:
            self._sink.play(samples, rate)

    def discard(self) -> None:
        with self._lock:
            self._held.clear()
            self._decided.set()

    def drain(self) -> None:
        wait = None if self._deadline is None else max(0.0, self._deadline - time.perf_counter())
        if not self._decided.wait(wait):
            self.discard()
        if self._released:
            self._sink.drain()

    def close(self) -> None:
        pass


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise AudioError(f"audio system unavailable: {exc}") from exc
    return sd


def _check_device(sd, device: str | int | None, kind: str) -> None:
    try:
        sd.query_devices(device, kind=kind)
    except (ValueError, sd.PortAudioError) as exc:
        what = "microphone" if kind == "input" else "speaker"
        name = f"'{device}'" if device is not None else "default"
        raise AudioError(f"no {what} available ({name} {kind} device: {exc})") from exc


class SpeakerSink:
    """Plays audio on an output device, in order, from a stream that never stops.

    PortAudio's callback takes queued samples as the device asks for them and plays silence
    when there are none, so the device never underruns or suspends between sentences (a
    suspended PulseAudio sink can take over a second to wake, which would delay the first
    words of every answer). `on_played(samples, rate)` sees every block as it is handed to
    the device (the echo reference); `pause()` goes silent from the next block and `resume()`
    goes on where it paused (a possible barge-in, not yet confirmed); `stop()` drops what is
    queued. `stopped_at` tells when the last sound left the speaker after a pause or stop.
    """

    RATE = 22050  # the Piper and espeak-ng voices' rate; other rates are resampled
    BLOCK_S = 0.02
    # Device buffer: enough to ride out a busy CPU, small enough that a pause is heard
    # within a few blocks.
    LATENCY_S = 0.08
    ECHO_TAIL_S = 1.5  # how long after the last sound silent blocks still go to on_played

    def __init__(
        self,
        device: str | int | None = None,
        on_played: Callable[[np.ndarray, int], None] | None = None,
    ) -> None:
        self._sd = _sounddevice()
        _check_device(self._sd, device, "output")
        self._device = device
        self._on_played = on_played
        self._rate = self.RATE
        self._lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0  # samples of the first chunk already handed to the device
        self._paused = False
        self._idle = threading.Event()
        self._idle.set()
        self._last_out = 0.0  # when the device was last handed sound (perf_counter)
        self.stopped_at: float | None = None
        self.underflows = 0
        self._stream = None
        self._open()

    def _open(self) -> None:
        try:
            stream = self._sd.OutputStream(
                samplerate=self._rate, channels=1, dtype="int16", device=self._device,
                blocksize=int(self._rate * self.BLOCK_S), latency=self.LATENCY_S,
                callback=self._callback,
            )
            stream.start()
        except (self._sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"cannot open the speaker: {exc}") from exc
        self._stream = stream

    @property
    def _latency(self) -> float:
        stream = self._stream
        return float(stream.latency) if stream is not None else 0.0

    @property
    def playing(self) -> bool:
        return not self._idle.is_set()

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        data = resample(samples, sample_rate, self._rate).astype(np.int16, copy=False)
        if not len(data):
            return
        if self._stream is None or not self._stream.active:
            try:  # the device went away (server restarted, unplugged): open it again
                self._reopen()
            except AudioError as exc:
                log.error("playback failed: %s", exc)
                return
        with self._lock:
            self._chunks.append(data)
            self._idle.clear()

    def _reopen(self) -> None:
        old, self._stream = self._stream, None
        if old is not None:
            try:
                old.close()
            except self._sd.PortAudioError as exc:
                log.debug("closing the speaker: %s", exc)
        self._open()

    def pause(self) -> None:
        """Go silent from the next block, keeping the rest for `resume()`."""
        with self._lock:
            if not self._paused:
                self._paused = True
                now = time.perf_counter()
                # What the device was already handed still plays out.
                self.stopped_at = now + self._latency if self.playing else now

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def stop(self) -> None:
        """Drop whatever is queued or playing (barge-in)."""
        with self._lock:
            if not self._paused:
                now = time.perf_counter()
                self.stopped_at = now + self._latency if self.playing else now
            self._paused = False
            self._chunks.clear()
            self._offset = 0
            self._idle.set()

    def drain(self) -> None:
        """Wait until everything queued has been heard (handed over and played out)."""
        while not self._idle.wait(0.5):
            if self._stream is None or not self._stream.active:
                log.error("playback failed: the output device stopped")
                self.stop()
        left = self._last_out + self._latency + self.BLOCK_S - time.perf_counter()
        if left > 0:
            time.sleep(left)

    def close(self) -> None:
        self.drain()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except self._sd.PortAudioError as exc:  # already gone with its device
                log.debug("closing the speaker: %s", exc)

    def _callback(self, outdata, frames, time_info, status) -> None:  # noqa: ARG002
        if not self._chunks and self._last_out < time.perf_counter() - self.ECHO_TAIL_S:
            outdata.fill(0)  # idle: the cheapest path, it runs fifty times a second
            return
        if status.output_underflow:
            self.underflows += 1
        out = outdata[:, 0]
        n = 0
        with self._lock:
            if not self._paused:
                while n < frames and self._chunks:
                    chunk = self._chunks[0]
                    take = min(frames - n, len(chunk) - self._offset)
                    out[n : n + take] = chunk[self._offset : self._offset + take]
                    n += take
                    self._offset += take
                    if self._offset >= len(chunk):
                        self._chunks.popleft()
                        self._offset = 0
                if not self._chunks:
                    self._idle.set()
        out[n:] = 0
        now = time.perf_counter()
        if n:
            self._last_out = now
        # The echo reference gets the silences too (pauses, gaps between sentences) while an
        # echo may still be about, so the recent reference stays one continuous signal.
        if self._on_played is not None and now - self._last_out < self.ECHO_TAIL_S:
            try:
                self._on_played(out.copy(), self._rate)
            except Exception:  # the echo reference must never break playback
                log.exception("echo reference failed")


class MicSource:
    """16 kHz mono int16 blocks from an input device, delivered through a queue.

    The PortAudio callback only copies into the queue, so it never blocks. `set_block_ms()`
    changes how much audio each wakeup brings (small blocks react sooner, large ones cost
    less CPU): a second stream opens and takes over with its first block, so audio keeps
    flowing, and the first one is closed on the next read.
    """

    def __init__(self, device: str | int | None = None, block_ms: int = 30) -> None:
        self._sd = _sounddevice()
        _check_device(self._sd, device, "input")
        self._device = device
        self._block_ms = block_ms
        self._queue: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=1000)
        self._stream = None
        self._retired: list = []  # streams a newer one has replaced, to be closed
        self._newest = 0  # generation of the newest stream
        self._live = 0  # generation whose blocks are delivered
        self._rate = SAMPLE_RATE
        self.overflows = 0
        self.delivered = 0  # blocks the device has handed over (0 until audio flows)

    @property
    def block_ms(self) -> int:
        return self._block_ms

    def _callback_for(self, gen: int):
        def callback(indata, frames, time_info, status) -> None:  # noqa: ARG001
            if gen != self._live:
                if gen != self._newest:
                    return  # replaced: its last blocks overlap the new stream's
                self._live = gen  # the new stream delivers: it takes over from here
            if status.input_overflow:
                self.overflows += 1
            self.delivered += 1
            try:
                # The arrival time goes with the block, so a reader that falls behind can
                # still line it up with what the speaker was playing at that moment.
                self._queue.put_nowait((indata[:, 0].copy(), time.perf_counter()))
            except queue.Full:
                self.overflows += 1

        return callback

    def _open(self, rate: int, block_ms: int, gen: int):
        stream = self._sd.InputStream(
            samplerate=rate, channels=1, dtype="int16", blocksize=rate * block_ms // 1000,
            device=self._device, callback=self._callback_for(gen),
        )
        stream.start()
        return stream

    def start(self) -> None:
        sd = self._sd
        for rate in (SAMPLE_RATE, None):
            try:
                if rate is None:
                    info = sd.query_devices(self._device, kind="input")
                    rate = int(info["default_samplerate"])
                self._newest = self._live = self._newest + 1
                self._stream = self._open(rate, self._block_ms, self._newest)
                self._rate = rate
                return
            except (sd.PortAudioError, ValueError) as exc:
                last = exc
        raise AudioError(f"cannot open the microphone: {last}")

    def set_block_ms(self, block_ms: int) -> None:
        """Deliver blocks of `block_ms` from now on (see the class comment)."""
        if block_ms == self._block_ms or self._stream is None:
            return
        try:
            stream = self._open(self._rate, block_ms, self._newest + 1)
        except (self._sd.PortAudioError, ValueError) as exc:
            log.warning("microphone blocks stay at %d ms: %s", self._block_ms, exc)
            return
        self._newest += 1
        self._retired.append(self._stream)
        self._stream, self._block_ms = stream, block_ms

    def _close_retired(self) -> None:
        while self._retired:
            old = self._retired.pop()
            try:
                old.abort()
                old.close()
            except self._sd.PortAudioError as exc:
                log.debug("closing a replaced microphone stream: %s", exc)

    @property
    def alive(self) -> bool:
        """False once the device stopped delivering (unplugged, server gone)."""
        return self._stream is not None and bool(self._stream.active)

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """The next block as 16 kHz int16, or None if nothing arrived in time."""
        item = self.read_timed(timeout)
        return None if item is None else item[0]

    def read_timed(self, timeout: float = 0.5) -> tuple[np.ndarray, float] | None:
        """The next block and when it arrived (perf_counter), or None."""
        if self._retired and self._live == self._newest:
            self._close_retired()
        try:
            block, at = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return resample(block, self._rate, SAMPLE_RATE), at

    def clear(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        self._close_retired()
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except self._sd.PortAudioError as exc:  # already gone with its device
                log.debug("closing the microphone: %s", exc)
            self._stream = None
