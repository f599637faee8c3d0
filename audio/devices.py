"""Where audio comes from and goes to: the microphone, the speaker, or WAV files."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE, resample
from sarai.audio.playback import PlaybackQueue, PlaybackSession

log = logging.getLogger(__name__)


class StreamClock:
    """PortAudio's stream times (ADC and DAC times, `currentTime`) on the perf_counter clock.

    A Python callback can run tens of milliseconds after PortAudio called for it (another
    thread holds the interpreter), so the time it runs at is not the moment `currentTime`
    names: a block stamped from it came out 40-80 ms late now and then, and the echo
    canceller took that for a gap in what played. The two clocks differ by a fixed offset,
    taken here as the smallest `now - currentTime` seen over the last `window_s`: a callback
    can only run late, never early."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._lows: deque[tuple[float, float]] = deque()  # (when, offset), offsets rising

    def offset(self, now: float, current: float) -> float:
        off = now - current
        lows = self._lows
        while lows and lows[-1][1] >= off:
            lows.pop()
        lows.append((now, off))
        while lows[0][0] < now - self._window_s:
            lows.popleft()
        return lows[0][1]


def _sounddevice():
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio library missing
        raise AudioError(f"audio system unavailable: {exc}") from exc
    return sd


def rescan_devices() -> None:
    """Have PortAudio list the sound devices again. It lists them once, when it starts: a
    daemon started before the sound server (or while it was down) otherwise never finds a
    microphone that is there now. It closes every stream: call it with none open."""
    sd = _sounddevice()
    try:
        sd._terminate()
        sd._initialize()
    except sd.PortAudioError as exc:
        log.debug("listing the sound devices again: %s", exc)


def _check_device(sd, device: str | int | None, kind: str) -> str | int | None:
    """The PortAudio device to open for the configured `device`, which may also be a name
    the desktop shows (see device_names); AudioError, listing what exists, if there is none."""
    from sarai.audio.device_names import UnknownDevice, use

    what = "microphone" if kind == "input" else "speaker"
    try:
        opened = use(device, kind)  # type: ignore[arg-type]
    except UnknownDevice as exc:
        raise AudioError(f"no {what} available ({exc})") from exc
    try:
        sd.query_devices(opened, kind=kind)
    except (ValueError, sd.PortAudioError) as exc:
        name = f"'{device}'" if device is not None else "default"
        raise AudioError(f"no {what} available ({name} {kind} device: {exc})") from exc
    return opened


class SpeakerSink:
    """Plays answers on an output device from a stream that runs while SARAi may speak.

    PortAudio's callback pulls blocks from a `PlaybackQueue` as the device asks for them and
    plays silence when there is nothing, so the device never underruns or suspends between
    sentences (a suspended PulseAudio sink can take over a second to wake, which would delay
    the first words of every answer); a pause or stop restarts it at once, throwing away
    what its buffer holds (see `_drop_buffered`). Only after `SLEEP_AFTER_S` with nothing to
    play does it stop (playing silence costs about 1 % of a core here, and the sound server
    over half as much again, for as long as SARAi listens), until audio is queued or `wake()`
    says some is likely soon: the user started talking, so a sink slow to wake has the
    length of their turn to do it. Each block is stamped with when it will
    really be heard, from PortAudio's output DAC time where the host API reports it (else the
    stream latency).
    `on_played(samples, rate, heard_at)` sees every block as it is handed to the device (the
    echo reference); `on_dropped(at)` hears when what the device held from `at` on was thrown
    away instead of played, and `on_ran_dry(at)` when the device ran out of audio before the
    block heard from `at` (the callback came late) and played silence meanwhile.
    """

    RATE = 22050  # the Piper and espeak-ng voices' rate; other rates are resampled
    BLOCK_S = 0.02
    # Device buffer: enough to ride out a busy CPU. A pause or stop does not wait for it:
    # it is thrown away (`_drop_buffered`).
    LATENCY_S = 0.08
    ECHO_TAIL_S = 1.5  # how long after the last sound silent blocks still go to on_played
    SLEEP_AFTER_S = 10.0  # with nothing played or woken for this long, the stream stops

    def __init__(
        self,
        device: str | int | None = None,
        on_played: Callable[[np.ndarray, int, float], None] | None = None,
        on_dropped: Callable[[float], None] | None = None,
        on_ran_dry: Callable[[float], None] | None = None,
    ) -> None:
        self._sd = _sounddevice()
        self._device = _check_device(self._sd, device, "output")
        self._on_played = on_played
        self._on_dropped = on_dropped
        self._on_ran_dry = on_ran_dry
        self._clock = StreamClock()  # the DAC times on our clock
        self.queue = PlaybackQueue(self.RATE)
        self._last_out = 0.0  # when the device was last handed sound (perf_counter)
        self.device_time = False  # the host API reports DAC times
        self.underflows = 0  # blocks the device played before the callback had filled them
        self._stream = None
        self._restarting = False  # between the abort and the start of `_drop_buffered`
        self._control = threading.Lock()  # the stream's starts and stops
        self._asleep = False  # stopped for want of anything to play (see SLEEP_AFTER_S)
        self._waking = False  # a thread is starting it again
        self._woke_at = time.perf_counter()
        self._restarted_at = float("-inf")  # when `_wake` last started the stream
        self.sleeps = 0  # times the stream stopped for want of anything to play
        self.queue.on_push = self.wake
        self._open()

    def _open(self) -> None:
        try:
            stream = self._sd.OutputStream(
                samplerate=self.RATE, channels=1, dtype="int16", device=self._device,
                blocksize=int(self.RATE * self.BLOCK_S), latency=self.LATENCY_S,
                callback=self._callback,
            )
            stream.start()
        except (self._sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"cannot open the speaker: {exc}") from exc
        self._stream = stream
        self._asleep = False
        self._woke_at = time.perf_counter()

    @property
    def _latency(self) -> float:
        stream = self._stream
        return float(stream.latency) if stream is not None else 0.0

    @property
    def playing(self) -> bool:
        return self.queue.playing

    @property
    def stopped_at(self) -> float | None:
        return self.queue.stopped_at

    @property
    def alive(self) -> bool:
        stream = self._stream
        return stream is not None and (self._restarting or self._asleep or bool(stream.active))

    @property
    def asleep(self) -> bool:
        """Stopped for want of anything to play; the next audio starts it again."""
        return self._asleep

    def wake(self) -> None:
        """Audio is likely soon: a stream asleep starts again, on a thread of its own, so the
        caller (the microphone's thread, or the voice writing an answer) never waits for the
        device; the stream then stays up at least `SLEEP_AFTER_S`."""
        with self._control:  # see `_sleep`
            self._woke_at = time.perf_counter()
            if not self._asleep or self._waking:
                return
            self._waking = True
        threading.Thread(target=self._wake, name="speaker-wake", daemon=True).start()

    def _wake(self) -> None:
        try:
            with self._control:
                stream = self._stream
                if not self._asleep or stream is None:
                    return
                try:
                    stream.abort()  # the callback stopped it; PortAudio wants it stopped here too
                    self._restarted_at = time.perf_counter()
                    stream.start()
                    log.debug("the speaker woke up")
                except self._sd.PortAudioError as exc:  # gone while asleep: `alive` says so
                    log.warning("the speaker could not start again: %s", exc)
                finally:
                    self._asleep = False
                    self._woke_at = time.perf_counter()
        finally:
            self._waking = False

    def session(self, on_first_audio=None, on_done=None) -> PlaybackSession:
        """A sink for one answer (see audio.playback)."""
        if not self.alive:
            try:  # the device went away (server restarted, unplugged): open it again
                self._reopen()
            except AudioError as exc:
                log.error("playback failed: %s", exc)
        return self.queue.session(on_first_audio, on_done)

    def _reopen(self) -> None:
        old, self._stream = self._stream, None
        if old is not None:
            try:
                old.close()
            except self._sd.PortAudioError as exc:
                log.debug("closing the speaker: %s", exc)
        self._open()

    def pause(self) -> None:
        """Go silent now, keeping the rest for `resume()`."""
        now = time.perf_counter()
        self.queue.pause(now)
        self._drop_buffered(now)

    def resume(self) -> None:
        self.queue.resume()

    def stop(self) -> None:
        """Drop whatever is queued or playing, and any audio still on its way (barge-in)."""
        now = time.perf_counter()
        self.queue.stop(now)
        self._drop_buffered(now)

    def _drop_buffered(self, at: float) -> None:
        """Throw away the sound the device holds and has not played yet (PortAudio's abort
        drops its buffer, 80 ms and a block here), so that a pause or a stop is heard at
        once rather than a buffer later. Restarting the stream takes 2–3 ms."""
        stream = self._stream
        if stream is None or self.queue.heard_until <= at:
            return  # nothing left in the device
        with self._control:
            if self._asleep:
                return
            self._restarting = True  # not a device gone away (see `alive`)
            try:
                stream.abort()
                if self._on_dropped is not None:
                    # Before the stream starts again: its next blocks come after this.
                    self._on_dropped(at)
                stream.start()
            except self._sd.PortAudioError as exc:  # it is reopened with the next answer
                log.warning("the speaker could not drop its buffer: %s", exc)
                return
            finally:
                self._restarting = False
        self.queue.unplayed(at)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until everything queued has been heard."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while self.queue.playing:
            if not self.alive:
                log.error("playback failed: the output device stopped")
                self.stop()
                return
            if deadline is not None and time.perf_counter() > deadline:
                return
            time.sleep(0.02)
        left = self._last_out + self._latency + self.BLOCK_S - time.perf_counter()
        if left > 0:
            time.sleep(left)

    def close(self) -> None:
        self.drain(timeout=5)
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except self._sd.PortAudioError as exc:  # already gone with its device
                log.debug("closing the speaker: %s", exc)

    def _sleep(self) -> None:
        """Stop the stream from its own callback (the silence it holds is thrown away),
        unless audio or a wake-up is on its way: the check and the flag are under the lock
        `wake` takes, so a wake-up never misses a stream going to sleep."""
        if not self._control.acquire(blocking=False):
            return  # being stopped, started or woken right now: not this time
        try:
            if self.queue.playing or self._woke_at > time.perf_counter() - self.SLEEP_AFTER_S:
                return
            self._asleep = True
            self.sleeps += 1
        finally:
            self._control.release()
        raise self._sd.CallbackAbort

    def _heard_at(self, time_info) -> float:
        now = time.perf_counter()
        dac, current = time_info.outputBufferDacTime, time_info.currentTime
        if dac > 0 and current > 0 and 0 <= dac - current < 2.0:
            self.device_time = True
            return dac + self._clock.offset(now, current)
        return now + self._latency

    def _callback(self, outdata, frames, time_info, status) -> None:  # noqa: ARG002
        # Only a gap in SARAi's voice counts: the sound server also reports the stream going
        # to sleep as an underrun, then or with the first blocks after it starts again.
        now = time.perf_counter()
        ran_dry = (status.output_underflow and self.queue.playing
                   and now - self._restarted_at > 0.5)
        if ran_dry:
            self.underflows += 1
        if not self.queue.playing and self._last_out < now - self.ECHO_TAIL_S:
            outdata.fill(0)  # idle: the cheapest path, it runs fifty times a second
            if max(self._last_out, self._woke_at) < now - self.SLEEP_AFTER_S:
                self._sleep()
            return
        out = outdata[:, 0]
        heard_at = self._heard_at(time_info)
        if ran_dry and self._on_ran_dry is not None:
            _tell_echo(self._on_ran_dry, heard_at)
        if self.queue.pull(out, heard_at):
            self._last_out = time.perf_counter()
        # The echo reference gets the silences too (pauses, gaps between sentences) while an
        # echo may still be about, so the recent reference stays one continuous signal.
        if self._on_played is not None:
            _tell_echo(self._on_played, out.copy(), self.RATE, heard_at)


def _tell_echo(callback: Callable[..., None], *args: object) -> None:
    """Tell the echo reference what played; its failure must never break playback."""
    try:
        callback(*args)
    except Exception:
        log.exception("echo reference failed")


class MicSource:
    """16 kHz mono int16 blocks from an input device, delivered through a queue.

    The PortAudio callback only copies into the queue, so it never blocks. `set_block_ms()`
    changes how much audio each wakeup brings (small blocks react sooner, large ones cost
    less CPU): a second stream opens and takes over with its first block, so audio keeps
    flowing, and the first one is closed on the next read. Only the first switch is
    seamless on PulseAudio: later ones lose 30 ms when blocks shrink and repeat 60-90 ms when
    they grow.
    """

    def __init__(self, device: str | int | None = None, block_ms: int = 30) -> None:
        self._sd = _sounddevice()
        self._device = _check_device(self._sd, device, "input")
        self._block_ms = block_ms
        self._queue: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=1000)
        self._stream = None
        self._retired: list = []  # streams a newer one has replaced, to be closed
        self._newest = 0  # generation of the newest stream
        self._live = 0  # generation whose blocks are delivered
        self._rate = SAMPLE_RATE
        self._clock = StreamClock()  # the ADC times on our clock
        self.overflows = 0  # blocks lost because the reader fell too far behind
        self.delivered = 0  # blocks the device has handed over (0 until audio flows)
        self.device_time = False  # the host API reports ADC times

    @property
    def block_ms(self) -> int:
        return self._block_ms

    def _callback_for(self, gen: int):
        def callback(indata, frames, time_info, status) -> None:  # noqa: ARG001
            if gen != self._live:
                if gen != self._newest:
                    return  # replaced: its last blocks overlap the new stream's
                self._live = gen  # the new stream delivers: it takes over from here
            self.delivered += 1
            try:
                # The capture time goes with the block, so a reader that falls behind can
                # still line it up with what the speaker was playing at that moment.
                self._queue.put_nowait((indata[:, 0].copy(), self._captured_at(frames,
                                                                               time_info)))
            except queue.Full:
                self.overflows += 1

        return callback

    def _captured_at(self, frames: int, time_info) -> float:
        """When the block's last sample entered the microphone (perf_counter clock): from
        PortAudio's ADC time where the host API reports it, else the block's arrival."""
        now = time.perf_counter()
        adc, current = time_info.inputBufferAdcTime, time_info.currentTime
        if adc > 0 and current > 0 and 0 <= current - adc < 2.0:
            self.device_time = True
            return adc + self._clock.offset(now, current) + frames / self._rate
        return now

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
