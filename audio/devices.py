"""Where audio comes from and goes to: the microphone, the speaker, or WAV files."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from audio.errors import AudioError
from audio.pcm import SAMPLE_RATE, resample, write_wav

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
    the pause turns out to be the end of the turn.
    """

    def __init__(self, sink: AudioSink) -> None:
        self._sink = sink
        self._held: list[tuple[np.ndarray, int]] = []
        self._lock = threading.Lock()
        self._decided = threading.Event()
        self._released = False

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        with self._lock:
            if not self._released:
                if not self._decided.is_set():
                    self._held.append((samples, sample_rate))
                return
        self._sink.play(samples, sample_rate)

    def release(self) -> None:
        with self._lock:
            self._released = True
            held, self._held = self._held, []
            self._decided.set()
        for samples, rate in held:
            self._sink.play(samples, rate)

    def discard(self) -> None:
        with self._lock:
            self._held.clear()
            self._decided.set()

    def drain(self) -> None:
        self._decided.wait()
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
    """Plays audio on an output device from a background thread, in order.

    `on_played(samples, rate)` sees every block as it is handed to the device (the echo
    reference); `stop()` drops what is queued within one block (barge-in).
    """

    BLOCK_S = 0.02
    # Device buffer: enough to ride out a busy CPU without underruns, small enough that a
    # barge-in is heard to stop quickly.
    LATENCY_S = 0.08

    def __init__(
        self,
        device: str | int | None = None,
        on_played: Callable[[np.ndarray, int], None] | None = None,
    ) -> None:
        self._sd = _sounddevice()
        _check_device(self._sd, device, "output")
        self._device = device
        self._on_played = on_played
        self.stopped_at: float | None = None
        self._queue: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._stop_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    @property
    def playing(self) -> bool:
        return not self._idle.is_set()

    def play(self, samples: np.ndarray, sample_rate: int) -> None:
        self._idle.clear()
        self._queue.put((samples, sample_rate))

    def stop(self) -> None:
        """Drop whatever is queued or playing (barge-in).

        `stopped_at` then tells when the last sound left the speaker (perf_counter).
        """
        if self.playing:
            self.stopped_at = None
            self._stop_now.set()
        else:
            self.stopped_at = time.perf_counter()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()  # so drain() does not wait for what was dropped
        if self._queue.unfinished_tasks == 0:
            self._stop_now.clear()
            self._idle.set()

    def drain(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        stream = None
        rate = None
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                samples, sr = item
                if self._stop_now.is_set():
                    if self.stopped_at is None:
                        self.stopped_at = time.perf_counter()
                    continue
                if stream is None or sr != rate:
                    if stream is not None:
                        stream.close()
                    stream = self._sd.OutputStream(
                        samplerate=sr, channels=1, dtype="int16", device=self._device,
                        latency=self.LATENCY_S,
                    )
                    stream.start()
                    rate = sr
                # Small blocks so stop() takes effect quickly.
                block = max(1, int(sr * self.BLOCK_S))
                for i in range(0, len(samples), block):
                    if self._stop_now.is_set():
                        # What is already in the device buffer still plays out.
                        self.stopped_at = time.perf_counter() + float(stream.latency)
                        break
                    piece = samples[i : i + block]
                    stream.write(piece.reshape(-1, 1))
                    if self._on_played is not None:
                        self._on_played(piece, sr)
            except Exception as exc:  # a device that vanished must not kill the thread
                log.error("playback failed: %s", exc)
                stream = None
            finally:
                self._queue.task_done()
                if self._queue.unfinished_tasks == 0:
                    self._stop_now.clear()
                    self._idle.set()
        if stream is not None:
            stream.close()


class MicSource:
    """16 kHz mono int16 blocks from an input device, delivered through a queue.

    The PortAudio callback only copies into the queue, so it never blocks.
    """

    def __init__(self, device: str | int | None = None, block_ms: int = 30) -> None:
        self._sd = _sounddevice()
        _check_device(self._sd, device, "input")
        self._device = device
        self._block_ms = block_ms
        self._queue: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=1000)
        self._stream = None
        self._rate = SAMPLE_RATE
        self.overflows = 0

    def _callback(self, indata, frames, time_info, status) -> None:  # noqa: ARG002
        if status.input_overflow:
            self.overflows += 1
        try:
            # The arrival time goes with the block, so a reader that falls behind can still
            # line it up with what the speaker was playing at that moment.
            self._queue.put_nowait((indata[:, 0].copy(), time.perf_counter()))
        except queue.Full:
            self.overflows += 1

    def start(self) -> None:
        sd = self._sd
        for rate in (SAMPLE_RATE, None):
            try:
                if rate is None:
                    info = sd.query_devices(self._device, kind="input")
                    rate = int(info["default_samplerate"])
                self._stream = sd.InputStream(
                    samplerate=rate,
                    channels=1,
                    dtype="int16",
                    blocksize=rate * self._block_ms // 1000,
                    device=self._device,
                    callback=self._callback,
                )
                self._stream.start()
                self._rate = rate
                return
            except (sd.PortAudioError, ValueError) as exc:
                last = exc
        raise AudioError(f"cannot open the microphone: {last}")

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
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except self._sd.PortAudioError as exc:  # already gone with its device
                log.debug("closing the microphone: %s", exc)
            self._stream = None
