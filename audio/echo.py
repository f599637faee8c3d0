"""Removing SARAi's own voice from the microphone: WebRTC's echo canceller (AEC3).

Every block the speaker is handed comes here (`played`, on the speaker's thread) with the time
it will be heard; every microphone frame comes here (`clean`, on the microphone's thread) with
the time it was captured. AEC3 (through livekit's binding of WebRTC's AudioProcessingModule,
with its noise suppressor and high-pass filter on the microphone path) needs both streams from
one thread, in order, 10 ms at a time, and the reference never later than its echo: a
reference that arrives after the echo it explains cancels nothing, and one more than about
half a second early cannot be matched. So the speaker's thread only queues its blocks, and
the microphone's thread turns them into one continuous 16 kHz reference on the speaker's
clock and, before each 10 ms of microphone audio, hands AEC3 the reference heard up to that
moment plus a small lead. The delay left for AEC3 to find is the room's and the devices'.

While nothing has played for a while both streams pause together (AEC3 keeps what it learnt,
and costs nothing while SARAi is silent); they resume together with the next answer. If the
speaker's callback comes late (a busy CPU), its device ran dry meanwhile and played silence:
the reference gets that silence and AEC3 carries on (until the blocks come again it is `blind`:
what played is not known). A pause or stop throws away what the speaker's device held
(`dropped`): that audio was handed over but never played, so the reference loses it, and the
device's next blocks go where their stamps say; a block stamped before the end of the reference
means the same (PortAudio started the stream again after it ran dry). Each time the streams
are lined up again from the stamps (an answer going on after a silence, a pause, a restarted
stream), the echo may come back a few milliseconds from where AEC3 learnt it; the next stretch
of SARAi's voice finds it (`audio.echo_lag`), and the reference not yet handed over moves by as
much (the speaker's stamps with it), so AEC3 finds the echo where it learnt it. Until it is
found, nothing heard over SARAi counts (`blind`); after the speaker's device ran dry
(`ran_dry`) the echo strays for a moment, and it is looked for once that is over. The
microphone's timestamps are noisy (PulseAudio's capture times stray by 20-70 ms now and then,
and once in a while by more than a second) while its samples are not: a frame whose stamp
strays from the microphone's sample clock is taken at the sample clock, and only a second
frame straying the same way says audio was lost (the reference then skips alike). If the
reference stops arriving for longer while the speaker should be playing, or the speaker's rate
changes, the canceller starts over (logged); until it has heard `warmup_s` of SARAi's voice
again it reports `converging`, and the front end judges barge-in more strictly meanwhile. Where
no echo comes back at all (headphones) its output is not used, and while its reference has
stalled it is `blind`: nothing heard over SARAi can be told from SARAi.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from sarai.audio.echo_lag import VOICED, EchoLag
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.stream_resample import StreamResampler

log = logging.getLogger(__name__)

FRAME = SAMPLE_RATE // 100  # AEC3 works on 10 ms frames
_JITTER_S = 0.02  # timestamp noise between consecutive speaker blocks
_MAX_GAP_S = 0.5  # a longer hole in the speaker's stream ends the reference segment
_MAX_INCOMING = 1000  # speaker blocks waiting for the microphone thread (20 s of 20 ms)
_RECENT_FRAMES = 15  # the reference level is taken over the last 150 ms handed to AEC3
_LEVELS = 100  # microphone frames kept to tell whether SARAi's voice comes back at all
_SPEAKING_RMS = 300.0  # a reference this loud is SARAi audibly speaking
_SILENT_RMS = 20.0  # a microphone quieter than this (-64 dBFS) hears nothing
# What the speaker's thread queues besides its blocks (see `dropped`, `ran_dry`).
_DROPPED = "dropped"
_RAN_DRY = "ran dry"


@dataclass(frozen=True)
class EchoTiming:
    lead_s: float = 0.04  # the reference goes in this much ahead of the echo's earliest time
    idle_s: float = 1.2  # nothing heard for this long: both streams pause
    hold_s: float = 0.6  # an echo outlives the last sound by the room's tail and the latency
    # The reference short of the microphone's own time (AEC3 wants `lead_s` more): the
    # speaker is late. AEC3 must not be given microphone frames without their reference, or
    # it loses the delay it found (measured: 3-10 dB instead of 55 dB for 3 s after a quarter
    # of a second of late blocks, had it waited 100 ms for them).
    late_s: float = 0.0
    stall_s: float = 0.3  # …and nothing from it for this long: it stalled
    warmup_s: float = 12.0  # SARAi's voice a new canceller needs to hear before it is trusted
    deaf_s: float = 3.0  # …and before it cancels anything much: nothing over SARAi counts yet
    # After the speaker's device ran dry, its echo strayed from the reference for up to a
    # quarter of a second (through PulseAudio: 18 ms early, then back, or 6.5 ms early for
    # good): it is looked for again after this long.
    dry_s: float = 0.5


def _rms(frame: np.ndarray) -> float:
    return float(np.sqrt(np.mean(frame.astype(np.float32) ** 2))) if len(frame) else 0.0


class _Aec3:
    """One WebRTC AudioProcessingModule: echo cancellation, noise suppression, high-pass
    filter, on 16 kHz mono int16. livekit aborts the whole process (a Rust panic) on a frame
    that is not exactly 10 ms, so every length is checked here first."""

    def __init__(self, delay_ms: int) -> None:
        from livekit import rtc  # imported late: about 0.4 s, and only the voice loop needs it

        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=True,
                                              high_pass_filter=True, auto_gain_control=False)
        self._delay_ms = max(0, min(500, delay_ms))  # AEC3 refuses anything outside 0..500

    def _frame(self, samples: np.ndarray):
        if samples.dtype != np.int16 or samples.shape != (FRAME,):
            raise ValueError(f"AEC3 takes {FRAME} int16 samples, not {samples.shape} "
                             f"{samples.dtype}")
        return self._rtc.AudioFrame(bytearray(samples.tobytes()), SAMPLE_RATE, 1, FRAME)

    def reverse(self, samples: np.ndarray) -> None:
        self._apm.process_reverse_stream(self._frame(samples))

    def capture(self, samples: np.ndarray) -> np.ndarray:
        frame = self._frame(samples)
        self._apm.set_stream_delay_ms(self._delay_ms)
        self._apm.process_stream(frame)
        return np.frombuffer(frame.data, np.int16).copy()


class EchoCanceller:
    """See the module comment. `played` may be called from any one thread (the speaker's);
    `clean`, `converging` and the rest from the microphone's thread.

    `cancel=False`: the canceller steps aside (the desktop already cancels, or there is no
    echo path); it still knows when SARAi was heard, for `active()`.
    """

    def __init__(self, timing: EchoTiming = EchoTiming(), *, cancel: bool = True) -> None:
        self.timing = timing
        self.cancelling = cancel
        self._lock = threading.Lock()
        # Speaker blocks (heard time, samples, rate) and events (time, _DROPPED or _RAN_DRY,
        # 0), in order.
        self._incoming: deque[tuple[float, np.ndarray | str, int]] = deque()
        self._last_sound = float("-inf")  # when the last sound handed over is heard out
        # The microphone thread's own state:
        self._rate: int | None = None  # the speaker's rate
        self._resampler: StreamResampler | None = None
        self._in_end: float | None = None  # heard time after the reference so far; None: none
        self._real_end = 0.0  # heard time after the last block the speaker really handed over
        self._skew = 0.0  # added to the speaker's stamps: how far the reference was moved
        self._padded = False  # silence stands in for blocks that came late (see `_fill_late`)
        self._restamp = False  # the next block goes where its stamp says (after a cut)
        self._ref = np.zeros(0, np.float32)  # 16 kHz reference not yet handed to AEC3
        self._ref_t0 = 0.0  # when _ref[0] is heard
        self._engaged = False  # both streams are flowing into AEC3
        self._mic_next: float | None = None  # when the next microphone frame should end
        self._mic_strayed = 0  # the last frame's stamp strayed from the sample clock: ±1
        self._last_end: tuple[float, int] | None = None  # where the last segment ended, rate
        self._aec: _Aec3 | None = None
        self._voice_frames = 0  # 10 ms reference frames with sound this instance has heard
        self._lag = EchoLag()  # where the echo sits against the reference AEC3 is given
        self._recent = deque([0.0] * _RECENT_FRAMES, maxlen=_RECENT_FRAMES)  # their energies
        # Microphone levels while SARAi speaks and while it is silent (see `echo_heard`).
        self._speaking_levels: deque[float] = deque(maxlen=_LEVELS)
        self._quiet_levels: deque[float] = deque(maxlen=10 * _LEVELS)
        self._echo_seen: bool | None = None  # None: not known yet
        self._said_no_echo = False
        self._speaking_seen = 0
        self._broken: str | None = None  # AEC3 cannot run here (why)
        self._stalled = False  # the reference stopped coming and has not come back
        self._warned_length = False
        self.restarts = 0
        self.late = 0  # times the speaker's blocks came late and silence stood in for them
        self.moved = 0  # times the reference was moved to where AEC3 learnt the echo
        self.last_restart: str | None = None

    # --- the speaker's thread ---------------------------------------------------------

    def played(self, samples: np.ndarray, sample_rate: int, heard_at: float | None = None) -> None:
        """A block the speaker was just handed (int16 mono, any rate), heard from `heard_at`
        on (default: now). Silent blocks keep the reference continuous."""
        at = time.perf_counter() if heard_at is None else heard_at
        sound = bool(samples.any())
        with self._lock:
            if sound:
                self._last_sound = max(self._last_sound, at + len(samples) / sample_rate)
            if not self.cancelling or self._broken:
                return
            self._incoming.append((at, samples.copy(), sample_rate))
            if len(self._incoming) > _MAX_INCOMING:  # nobody is reading the microphone
                self._incoming.popleft()

    def ran_dry(self, at: float) -> None:
        """The speaker's device ran out of audio before a block heard from `at` (its callback
        came late: a busy CPU), and played silence meanwhile."""
        with self._lock:
            if self.cancelling and not self._broken:
                self._incoming.append((at, _RAN_DRY, 0))

    def dropped(self, at: float) -> None:
        """The speaker threw away what its device held that would have been heard from `at`
        on (a pause or stop heard at once): it was handed over but never played. Its stream
        starts again, and the blocks it hands over next are stamped on its new clock."""
        with self._lock:
            self._last_sound = min(self._last_sound, at)
            if self.cancelling and not self._broken:
                self._incoming.append((at, _DROPPED, 0))

    # --- what the front end asks --------------------------------------------------------

    def active(self, at: float | None = None) -> bool:
        """True if an echo of playback may be in audio captured at `at` (default: now)."""
        at = time.perf_counter() if at is None else at
        return self.quiet_for(at) < self.timing.hold_s

    def quiet_for(self, at: float) -> float:
        """How long before `at` the last sound handed to the speaker was heard out (negative:
        it is still being heard)."""
        return at - self._last_sound

    @property
    def converging(self) -> bool:
        """The canceller cannot be trusted yet: it is new or has just started over and has
        not heard `warmup_s` of SARAi's voice, or AEC3 cannot run at all (see `blind`)."""
        if not self.cancelling:
            return False
        if self._broken:
            return True
        return self.echo_heard and self._voice_frames < self.timing.warmup_s * 100

    @property
    def echo_heard(self) -> bool:
        """Whether SARAi's voice comes back at all: while it speaks, the microphone is well
        above its own noise floor. Without an echo path (headphones) AEC3's output is not
        used: for its first seconds it holds down everything heard while SARAi speaks, the
        user included, waiting for an echo that never comes. Once heard, an echo path is
        taken to stay; until enough has been heard, it is assumed."""
        return self._echo_seen is not False

    def _judge_echo(self) -> None:
        floor = float(np.percentile(self._quiet_levels, 10)) if self._quiet_levels else 0.0
        speaking = float(np.percentile(self._speaking_levels, 25))
        self._echo_seen = speaking > max(3.0 * floor, _SILENT_RMS)
        if not self._echo_seen and not self._said_no_echo:
            self._said_no_echo = True
            log.info("SARAi's voice does not come back into the microphone (headphones?): "
                     "its echo canceller's output is not used until it does")

    def blind(self, at: float | None = None) -> bool:
        """SARAi may be heard in audio captured at `at`, and nothing can take it out: its
        reference stopped coming or is late (silence stands in for what may have played),
        AEC3 cannot run here, or a new AEC3 has not yet heard
        `deaf_s` of SARAi's voice (for its first seconds it lets most of the echo through),
        or SARAi speaks again after the streams were lined up again and its echo has not
        been found yet (see `audio.echo_lag`; after the speaker's device ran dry, not before
        `dry_s`).
        Nothing heard meanwhile can be told from SARAi's own voice."""
        if not self.cancelling or not self.active(at):
            return False
        return (self._stalled or self._padded or self._broken is not None
                or (self.echo_heard and (self._voice_frames < self.timing.deaf_s * 100
                                         or self._lag.unsure)))

    @property
    def reference_rms(self) -> float:
        """How loud SARAi was (RMS of the reference) over the last 150 ms handed to AEC3,
        which is what can be echoing in the frame just cleaned; 0 while paused."""
        return float(np.sqrt(max(self._recent))) if self._engaged else 0.0

    def clean(self, frame: np.ndarray, captured_at: float | None = None) -> np.ndarray:
        """The frame (16 kHz int16, its last sample captured at `captured_at`) with SARAi's
        voice removed while it may be in it; unchanged while nothing plays."""
        if not self.cancelling or self._broken:
            return frame
        at = time.perf_counter() if captured_at is None else captured_at
        n = len(frame)
        if n == 0 or n % FRAME:
            if not self._warned_length:
                self._warned_length = True
                log.warning("echo cancellation skips a %d-sample microphone frame "
                            "(it needs whole 10 ms)", n)
            return frame
        at, jumped = self._mic_clock(at, n)
        self._absorb()
        start = at - n / SAMPLE_RATE
        if self._engaged and start - self._last_sound > self.timing.idle_s:
            self._engaged = False  # SARAi has been silent a while: both streams pause
            self._end_segment()
        if not self._engaged:
            if self._in_end is None or self._ref_t0 > at + self.timing.lead_s:
                self._quiet_levels.append(_rms(frame))
                return frame
            self._engaged = True
            self._stalled = False
            self._align(start)
        elif jumped:
            self._align(start)  # the microphone lost audio: skip the reference alike
        behind = at - (self._ref_t0 + len(self._ref) / SAMPLE_RATE)
        if behind > self.timing.late_s + self._lag_s:
            silent = at - self._real_end
            if silent > self.timing.stall_s:
                self._restart(f"the speaker's audio stopped arriving ({silent * 1000:.0f} ms "
                              "behind the microphone)")
                self._stalled = True
                return frame
            self._fill_late(behind)
        try:
            out = self._cancel(frame, start)
        except (RuntimeError, ValueError) as exc:
            self._restart(f"AEC3 failed: {exc}")
            return frame
        if self.reference_rms > _SPEAKING_RMS and not self._echo_seen:
            self._speaking_levels.append(_rms(frame))
            self._speaking_seen += 1
            if self._speaking_seen >= _LEVELS // 4 and self._speaking_seen % 10 == 0:
                self._judge_echo()
        return out if self.echo_heard else frame

    # --- the microphone's thread ------------------------------------------------------

    @property
    def _lag_s(self) -> float:
        return self._resampler.lag_s if self._resampler is not None else 0.0

    def _cancel(self, frame: np.ndarray, start: float) -> np.ndarray:
        if self._aec is None:
            try:
                self._aec = _Aec3(round(self.timing.lead_s * 1000))
            except (ImportError, OSError, RuntimeError) as exc:
                self._broken = str(exc)
                log.error("echo cancellation is unavailable (%s): SARAi does not listen for "
                          "barge-in while it speaks", exc)
                return frame
        out = np.empty_like(frame)
        for j in range(len(frame) // FRAME):
            due = start + (j + 1) / 100 + self.timing.lead_s  # reference heard until here
            while len(self._ref) >= FRAME and self._ref_t0 + 1 / 100 <= due + 1e-6:
                ref = np.clip(np.round(self._ref[:FRAME]), -32768, 32767).astype(np.int16)
                self._ref = self._ref[FRAME:]
                self._ref_t0 += 1 / 100
                self._aec.reverse(ref)
                energy = float(np.mean(ref.astype(np.float32) ** 2))
                self._lag.reference(ref, energy)
                self._recent.append(energy)
                if energy > VOICED:
                    self._voice_frames += 1
            part = frame[j * FRAME : (j + 1) * FRAME]
            out[j * FRAME : (j + 1) * FRAME] = self._aec.capture(part)
            moved = self._lag.microphone(part)
            if moved:
                self._move(moved)
        return out

    def _mic_clock(self, at: float, n: int) -> tuple[float, bool]:
        """The frame's end on the microphone's own sample clock: its timestamps stray, its
        samples do not. True as well when audio was lost (a jump): two frames in a row whose
        stamps stray the same way by more than `_JITTER_S`. One alone is a stamp gone astray
        (through PulseAudio, 26 in 90 s; lining the reference up with it made AEC3 lose the
        delay it had found and let SARAi's voice through for half a second)."""
        expected = self._mic_next
        if expected is not None:
            off = at - expected
            strayed = 0 if abs(off) <= _JITTER_S else (1 if off > 0 else -1)
            jumped = strayed != 0 and strayed == self._mic_strayed
            self._mic_strayed = 0 if jumped else strayed
            if not jumped:
                at = expected
        else:
            jumped = False
        self._mic_next = at + n / SAMPLE_RATE
        return at, jumped

    def _fill_late(self, behind: float) -> None:
        """The speaker's callback is late (a busy CPU): its device ran dry, so silence is
        what was heard since its last block. That silence goes into the reference, up to what
        this microphone frame needs, and AEC3 goes on with what it learnt; blocks that come
        later and claim some of that time lose the part that overlaps (see `_absorb`)."""
        assert self._rate is not None
        if not self._padded:
            self.late += 1
            log.info("the speaker's audio is late (%.0f ms behind the microphone): its device "
                     "ran dry, and the echo canceller counts silence meanwhile", behind * 1000)
        self._padded = True
        self._append(np.zeros(round((behind + self.timing.lead_s) * self._rate), np.float32))

    def _align(self, start: float) -> None:
        """Line the reference up with the microphone frame that starts at `start`, to the
        sample: from here on the reference heard at t goes into AEC3 alongside the microphone
        audio captured at t - lead_s, so the delay AEC3 learnt holds from one stretch of speech
        to the next. Reference heard before that is dropped (its microphone audio is gone);
        silence, which is what played, fills the time until the reference begins. The echo
        may not come back to the sample where AEC3 learnt it: it is looked for again."""
        self._lag.recheck()
        base = start + self.timing.lead_s
        off = int(round((self._ref_t0 - base) * SAMPLE_RATE))
        if off < 0:
            drop = min(-off, len(self._ref))
            self._ref = self._ref[drop:]
            self._ref_t0 += drop / SAMPLE_RATE  # (a reference still short of `base` is late)
        elif off > 0:
            self._ref = np.concatenate([np.zeros(off, np.float32), self._ref])
            self._ref_t0 = base

    def _absorb(self) -> None:
        """Move what the speaker handed over into the 16 kHz reference, on its clock."""
        with self._lock:
            blocks = list(self._incoming)
            self._incoming.clear()
        for at, samples, rate in blocks:
            if isinstance(samples, str):
                if samples == _DROPPED:
                    self._cut(at + self._skew)
                else:
                    log.info("the speaker's device ran dry: its echo is looked for again")
                    self._lag.recheck(wait=round(self.timing.dry_s * 100))
                continue
            at += self._skew
            if rate != self._rate:
                if self._rate is not None:
                    self._restart(f"the speaker's rate changed from {self._rate} to {rate} Hz")
                self._rate = rate
                self._end_segment()
            sound = bool(samples.any())
            if self._in_end is not None:
                gap = at - self._in_end
                if gap < -_JITTER_S and not (self._restamp or self._padded):
                    # The device started its stream again (it ran dry, or its sound server
                    # restarted it): what it held from here on was thrown away, unplayed.
                    self._cut(at)
                    gap = at - self._in_end
                # After a cut the stamp places the block exactly; else within the jitter
                # the block follows on the speaker's sample clock.
                tolerance = 0.0 if self._restamp else _JITTER_S
                if gap > _MAX_GAP_S:
                    self._end_segment()  # a long hole: what follows is a new stretch
                elif gap > tolerance:
                    self._append(np.zeros(round(gap * rate), np.float32))  # nothing played
                elif gap < -tolerance:
                    # Late (or cut): silence already stands in for the start of this block.
                    samples = samples[min(len(samples), round(-gap * rate)):]
                    if not len(samples):
                        continue
            if self._in_end is None:
                if not sound:
                    continue  # silence while nothing plays: nothing to start
                self._start_segment(at, rate, len(samples))
            self._append(samples)
            self._real_end, self._padded, self._restamp = self._in_end, False, False

    def _move(self, samples: int) -> None:
        """SARAi's echo came `samples` later than AEC3 learnt (earlier if negative): the
        reference not yet handed over moves by as much, and the speaker's stamps with it, so
        the echo lands where AEC3 learnt it. Moves add up (the two devices' clocks drift
        apart while SARAi speaks); one that would take the reference more than `_JITTER_S`
        from the stamps is not made: the stamps are taken as they are from the next line-up
        on, and AEC3 finds the echo on its own."""
        moved = samples / SAMPLE_RATE
        if abs(self._skew + moved) > _JITTER_S:
            log.info("SARAi's echo moved by %.1f ms, too far from the device timestamps to "
                     "follow: the echo canceller finds it again", moved * 1000)
            self._skew = 0.0
            return
        if samples > 0:
            self._ref = np.concatenate([np.zeros(samples, np.float32), self._ref])
        else:
            self._ref = self._ref[min(-samples, len(self._ref)) :]
        self._skew += moved
        if self._in_end is not None:
            self._in_end += moved
        self._real_end += moved
        self.moved += 1
        log.debug("SARAi's echo moved by %d samples (%.1f ms): the reference moved with it",
                  samples, moved * 1000)

    def _cut(self, at: float) -> None:
        """The reference from `at` on was never played (see `dropped`): it ends there, or
        where AEC3 has had it up to if that is later; what follows goes by its stamps."""
        if self._in_end is None or self._in_end <= at:
            return
        assert self._rate is not None
        self._lag.recheck()  # the next blocks go where the new stream's stamps say
        keep = min(len(self._ref), max(0, round((at - self._ref_t0) * SAMPLE_RATE)))
        self._ref = self._ref[:keep]
        end = self._ref_t0 + keep / SAMPLE_RATE
        if end < at:  # what the resampler held of the time before `at`: silence stands in
            pad = round((at - end) * SAMPLE_RATE)
            self._ref = np.concatenate([self._ref, np.zeros(pad, np.float32)])
            end += pad / SAMPLE_RATE
        self._resampler = StreamResampler(self._rate)
        self._in_end = end
        self._real_end = min(self._real_end, end)
        self._padded = False
        self._restamp = True

    def _start_segment(self, at: float, rate: int, block: int) -> None:
        last = self._last_end
        if last is not None and last[1] == rate:
            # The speaker's stream went on in silence meanwhile: keep to its sample clock.
            step = block / rate
            snapped = last[0] + round((at - last[0]) / step) * step
            if abs(at - snapped) < 0.004:
                at = snapped
        self._resampler = StreamResampler(rate)
        self._ref = np.zeros(0, np.float32)
        self._ref_t0 = self._in_end = at

    def _append(self, samples: np.ndarray) -> None:
        assert self._resampler is not None and self._in_end is not None
        out = self._resampler.push(samples)
        if len(out):
            self._ref = np.concatenate([self._ref, out]) if len(self._ref) else out
        self._in_end += len(samples) / self._resampler.src_rate

    def _end_segment(self) -> None:
        if self._in_end is not None and self._rate is not None:
            self._last_end = (self._in_end, self._rate)
        self._engaged = False
        self._in_end = None
        self._padded = self._restamp = False
        self._resampler = None
        self._ref = np.zeros(0, np.float32)

    def _restart(self, why: str) -> None:
        """Start over with a new AEC3: it must learn the room again (see `converging`)."""
        log.warning("echo cancellation starts over: %s", why)
        self.restarts += 1
        self.last_restart = why
        self._aec = None
        self._voice_frames = 0
        self._lag = EchoLag()
        self._skew = 0.0
        self._end_segment()
