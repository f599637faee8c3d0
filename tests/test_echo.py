"""The echo canceller (WebRTC AEC3 through livekit) on its own, fed as the devices feed it.

SARAi's voice (espeak-ng, played at the speaker's 22050 Hz in 20 ms blocks stamped with when
they are heard) reaches the microphone through a simulated office (audio.room) 30 ms later than
the stamps say, over room noise; the microphone hands over 30 ms frames stamped with their
capture time. What is measured is what comes out: how much of the echo is left, whether a
person talking over it survives, and what happens when the reference misbehaves.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import soundfile as sf
from recordings import PROMPTS
from scipy.signal import fftconvolve

from sarai.audio.echo import EchoCanceller, EchoTiming
from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.room import ROOMS, active_level_db, impulse_responses, pink_noise, scaled_to
from sarai.audio.stream_resample import StreamResampler

RATE = 22050
BLOCK = 441  # the speaker's 20 ms blocks
FRAME = 480  # the microphone's 30 ms frames
STORY = ("The lighthouse keeper climbed the stairs every evening to light the lamp. Ships "
         "passed far out at sea, and their captains counted on the beam to find the harbour. "
         "In winter the storms were so strong that the tower shook, but the light never failed. "
         "One night a small boat lost its way in the fog, and the keeper rang the bell until "
         "the sailors found the entrance. The next morning they brought him fresh bread.")


@dataclass
class Run:
    mic: np.ndarray  # what the microphone heard (int16)
    echo: np.ndarray  # the echo alone in it (float)
    out: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))


def _voice(make_speech, text: str = STORY) -> np.ndarray:
    """`text` in espeak-ng's voice at the speaker's rate, int16."""
    data, rate = sf.read(str(make_speech([text], rate=RATE, lead_s=0.0)), dtype="int16")
    assert rate == RATE
    return data


def _room_mic(ref: np.ndarray, *, gain_db: float = -20.0, delay_s: float = 0.05,
              user: np.ndarray | None = None, user_at_s: float = 0.0, user_db: float = 0.0,
              room: str = "office", echo: bool = True) -> Run:
    """The microphone signal for a reference played from t=0: the echo through the room at
    `gain_db` dBFS, `delay_s` after it is heard, room noise, and the user's speech (through
    its own path) from `user_at_s` at `user_db` relative to the echo."""
    rirs = impulse_responses(ROOMS[room])
    ref16 = StreamResampler(RATE).push(np.concatenate([ref, np.zeros(RATE)])).astype(np.float64)
    n = len(ref16)
    e = fftconvolve(ref16, rirs.speaker)[:n]
    d = int(delay_s * SAMPLE_RATE)
    e = np.concatenate([np.zeros(d), e])[:n]
    e *= 10 ** ((gain_db - active_level_db(e)) / 20) if echo else 0.0
    mic = e + pink_noise(n, ROOMS[room].noise_dbfs, np.random.default_rng(1))
    if user is not None:
        u = scaled_to(fftconvolve(user, rirs.user)[: len(user)], gain_db + user_db)
        i = int(user_at_s * SAMPLE_RATE)
        mic[i : i + len(u)] += u[: n - i]
    return Run(np.clip(np.round(mic), -32768, 32767).astype(np.int16), e)


def _feed(ec: EchoCanceller, ref: np.ndarray, run: Run, *, t0: float = 100.0,
          ahead_s: float = 0.06, rate: int = RATE, drop: tuple[float, float] | None = None,
          start_s: float = 0.0, stray: dict[int, float] | None = None,
          after: Callable[[int, float], None] | None = None) -> np.ndarray:
    """Hand the speaker's blocks over `ahead_s` before they are heard (as a device buffer
    does) and the microphone's frames as they are captured; returns the canceller's output.
    `drop`: a span of heard time (s) whose blocks never arrive (a stalled reference).
    `stray`: microphone frames (by index) whose capture time is stamped that much off.
    `after(j, at)`: called once frame j, captured until `at`, is cleaned."""
    block = rate * BLOCK // RATE
    # After the sound the device goes on playing silence, as the real speaker's stream does.
    ref = np.concatenate([ref, np.zeros(len(run.mic) * rate // SAMPLE_RATE, np.int16)])
    blocks = [(t0 + start_s + k * block / rate, ref[k * block : (k + 1) * block])
              for k in range(len(ref) // block)]
    out = np.zeros(len(run.mic) // FRAME * FRAME, np.int16)
    b = 0
    for j in range(len(run.mic) // FRAME):
        at = t0 + (j + 1) * FRAME / SAMPLE_RATE
        while b < len(blocks) and blocks[b][0] <= at + ahead_s:
            heard, samples = blocks[b]
            if drop is None or not drop[0] <= heard - t0 < drop[1]:
                ec.played(samples, rate, heard)
            b += 1
        frame = run.mic[j * FRAME : (j + 1) * FRAME]
        cleaned = ec.clean(frame, at + (stray or {}).get(j, 0.0))
        assert cleaned.shape == frame.shape and cleaned.dtype == np.int16
        out[j * FRAME : (j + 1) * FRAME] = cleaned
        if after is not None:
            after(j, at)
    run.out = out
    return out


def _reduction_db(run: Run, start_s: float, end_s: float) -> float:
    """Echo energy over output energy between two times, where the echo is within 30 dB of
    its loudest 10 ms."""
    a, b = int(start_s * SAMPLE_RATE), int(end_s * SAMPLE_RATE)
    e = run.echo[a:b][: (b - a) // 160 * 160].reshape(-1, 160)
    o = run.out[a:b].astype(np.float64)[: e.size].reshape(-1, 160)
    pe = (e**2).mean(axis=1)
    act = pe > pe.max() * 1e-3
    return float(10 * np.log10(pe[act].sum() / max((o[act] ** 2).mean(axis=1).sum(), 1e-9)))


def test_its_own_voice_through_a_room_is_removed(make_speech):
    ref = _voice(make_speech)
    run = _room_mic(ref)
    ec = EchoCanceller()
    _feed(ec, ref, run)
    assert ec.restarts == 0 and ec.echo_heard
    # AEC3 learns the room within a few seconds; from then on the echo is 25 dB down or more.
    settled = _reduction_db(run, 5.0, len(ref) / RATE)
    assert settled >= 25, settled
    assert _reduction_db(run, 0.0, 2.0) < settled  # it did have to learn
    assert not ec.converging  # heard enough of SARAi to be trusted


def test_a_person_talking_over_it_survives(make_speech):
    ref = _voice(make_speech)
    person = read_audio(PROMPTS["en"] / "conf-nonextended.wav").samples.astype(np.float64)
    alone = _room_mic(ref)
    both = _room_mic(ref, user=person, user_at_s=8.0, user_db=0.0)
    _feed(EchoCanceller(), ref, alone)
    _feed(EchoCanceller(), ref, both)
    span = slice(int(8.0 * SAMPLE_RATE), int(8.0 * SAMPLE_RATE) + len(person))
    left_of_echo = np.sqrt(np.mean(alone.out[span].astype(np.float64) ** 2))
    with_person = np.sqrt(np.mean(both.out[span].astype(np.float64) ** 2))
    person_level = np.sqrt(np.mean(scaled_to(person, -20.0) ** 2))
    # What comes out while the person talks is the person: far above what is left of the
    # echo alone, and within 15 dB of their level at the microphone (AEC3 holds a talker
    # down somewhat while the echo is loud).
    assert with_person > 10 * left_of_echo, (with_person, left_of_echo)
    assert with_person > person_level * 10 ** (-15 / 20), (with_person, person_level)


def test_after_a_silence_both_streams_resume_where_they_were(make_speech):
    """While SARAi is silent the canceller costs nothing (AEC3 is not fed at all) and the
    next answer is cancelled from its first second: the room it learnt is still right."""
    first, second = _voice(make_speech), _voice(make_speech, "Of course. The harbour is to "
                                                "the north, past the old church and the "
                                                "market square.")
    gap = np.zeros(RATE * 3, np.int16)
    ref = np.concatenate([first, gap, second])
    run = _room_mic(ref)
    ec = EchoCanceller()
    outs: list[np.ndarray] = []
    passthrough = []
    original = ec.clean

    def clean(frame, at):
        out = original(frame, at)
        outs.append(out)
        passthrough.append(out is frame)
        return out

    ec.clean = clean  # type: ignore[method-assign]
    _feed(ec, ref, run)
    start = len(first) / RATE
    idle = [p for k, p in enumerate(passthrough) if start + 1.5 < (k + 1) * 0.03 < start + 2.9]
    assert idle and all(idle)  # paused: the frames go through untouched
    t2 = (len(first) + len(gap)) / RATE
    assert _reduction_db(run, t2, t2 + 1.0) >= 25, _reduction_db(run, t2, t2 + 1.0)
    assert ec.restarts == 0


def test_a_stalled_reference_restarts_the_canceller_and_says_so(make_speech, caplog):
    ref = _voice(make_speech)
    run = _room_mic(ref)
    ec = EchoCanceller()
    with caplog.at_level(logging.WARNING, logger="sarai.audio.echo"):
        _feed(ec, ref, run, drop=(6.0, 6.6))
    assert ec.restarts == 1
    assert "stopped arriving" in caplog.text and "starts over" in caplog.text
    # It learnt the room again, on the reference that came after the stall.
    assert _reduction_db(run, 12.0, len(ref) / RATE) >= 20


def test_a_speaker_running_late_is_silence_not_a_fresh_start(make_speech, caplog):
    """A busy CPU delays the speaker's callback by a quarter of a second: its device runs dry
    and plays nothing meanwhile, and the voice goes on after the gap. The canceller keeps the
    room it learnt (a fresh one would let the echo through for seconds, and barge-in with it)."""
    voice = _voice(make_speech)
    at = 6 * RATE // BLOCK * BLOCK
    gap = np.zeros(RATE // 4 // BLOCK * BLOCK, np.int16)
    ref = np.concatenate([voice[:at], gap, voice[at:]])
    run = _room_mic(ref)
    ec = EchoCanceller()
    with caplog.at_level(logging.INFO, logger="sarai.audio.echo"):
        _feed(ec, ref, run, drop=(at / RATE, (at + len(gap)) / RATE))
    assert ec.restarts == 0 and ec.late >= 1
    assert "late" in caplog.text and "starts over" not in caplog.text
    after = (at + len(gap)) / RATE
    assert _reduction_db(run, after + 0.2, after + 3.0) >= 25, \
        _reduction_db(run, after + 0.2, after + 3.0)
    assert not ec.blind() and not ec.converging


def _moved_echo(make_speech, at_s: float, moved: int, *, gap_s: float = 0.0) -> tuple[
        np.ndarray, Run, float]:
    """SARAi's voice whose echo comes back `moved` samples later (earlier if negative) from
    `at_s` on than before, as through PulseAudio after the streams were lined up again;
    `gap_s` of silence there (a pause in what SARAi says)."""
    voice = _voice(make_speech)
    p = int(at_s * RATE) // BLOCK * BLOCK
    gap = np.zeros(int(gap_s * RATE) // BLOCK * BLOCK, np.int16)
    ref = np.concatenate([voice[:p], gap, voice[p:]])
    before, after = _room_mic(ref), _room_mic(ref, delay_s=0.05 + moved / SAMPLE_RATE)
    cut = int(at_s * SAMPLE_RATE)
    run = Run(np.concatenate([before.mic[:cut], after.mic[cut:]]),
              np.concatenate([before.echo[:cut], after.echo[cut:]]))
    return ref, run, (p + len(gap)) / RATE


@pytest.mark.parametrize("moved", [-64, -180])
def test_an_echo_that_comes_back_elsewhere_after_a_silence_is_followed(make_speech, moved):
    """Each time SARAi speaks again after a silence the two streams are lined up again from
    the device timestamps, which through PulseAudio put the echo 10-180 samples away from
    where AEC3 had learnt it; AEC3 then let SARAi's voice through for seconds (here: 8-22 dB
    removed for a second). The echo is found on the first 200 ms of the new stretch, the
    reference moves with it, and nothing heard over SARAi counts meanwhile."""
    ref, run, again = _moved_echo(make_speech, 6.0, moved, gap_s=2.0)
    ec = EchoCanceller()
    blind: dict[float, bool] = {}
    _feed(ec, ref, run, after=lambda j, at: blind.__setitem__(round(at - 100.0, 2),
                                                                ec.blind(at)))
    assert ec.moved == 1 and ec.restarts == 0
    assert _reduction_db(run, again + 0.3, again + 1.3) >= 25, \
        _reduction_db(run, again + 0.3, again + 1.3)
    start = [t for t in blind if again + 0.05 <= t < again + 0.15]
    assert start and all(blind[t] for t in start)  # not found yet: nothing counts
    later = [t for t in blind if again + 0.5 <= t < again + 2.0]
    assert later and not any(blind[t] for t in later)


def test_after_the_speaker_ran_dry_its_echo_is_looked_for_once_it_settles(make_speech,
                                                                           caplog):
    """Through PulseAudio, after the speaker's device ran dry the echo strayed 18 ms from
    the reference for a quarter of a second and came back (measuring it then moved the
    reference the wrong way, and SARAi paused itself for its own voice). The speaker says so
    (`ran_dry`); nothing heard over SARAi counts until the echo is looked for after `dry_s`
    and found (here where it was: nothing is moved)."""
    ref = _voice(make_speech)
    run = _room_mic(ref)
    ec = EchoCanceller()
    dry_at, blind = 6.0, {}

    def after(j: int, at: float) -> None:
        t = at - 100.0
        if abs(t - dry_at) < 0.015:
            ec.ran_dry(at + 0.06)
        blind[round(t, 2)] = ec.blind(at)

    with caplog.at_level(logging.INFO, logger="sarai.audio.echo"):
        _feed(ec, ref, run, after=after)
    assert "ran dry" in caplog.text and ec.moved == 0 and ec.restarts == 0
    assert not any(blind[t] for t in blind if 5.0 <= t < dry_at)  # it was trusted
    assert all(blind[t] for t in blind if dry_at + 0.05 <= t < dry_at + 0.4)
    assert not any(blind[t] for t in blind if dry_at + 1.2 <= t < dry_at + 4.0)
    assert _reduction_db(run, dry_at, dry_at + 3.0) >= 25, _reduction_db(run, dry_at, dry_at + 3)


def test_a_speaker_that_changes_rate_restarts_the_canceller(make_speech, caplog):
    ref = _voice(make_speech)
    half = len(ref) // 2 // (3 * BLOCK) * (3 * BLOCK)  # on a microphone frame's edge too
    run = _room_mic(ref)
    ec = EchoCanceller()
    with caplog.at_level(logging.WARNING, logger="sarai.audio.echo"):
        _feed(ec, ref[:half], Run(run.mic[: half * SAMPLE_RATE // RATE], run.echo))
        # The same sound, now handed over at 44.1 kHz (the device was reopened at its rate).
        from sarai.audio.pcm import resample

        later = resample(ref[half:], RATE, 44100)
        rest = Run(run.mic[half * SAMPLE_RATE // RATE :], run.echo[half * SAMPLE_RATE // RATE :])
        _feed(ec, later, rest, rate=44100, t0=100.0 + half / RATE)
    assert ec.restarts == 1
    assert "rate changed from 22050 to 44100 Hz" in caplog.text
    tail = Run(rest.mic, rest.echo, rest.out)
    assert _reduction_db(tail, 5.0, len(later) / 44100) >= 20


def test_a_frame_that_is_not_whole_10_ms_is_passed_on_not_processed(caplog):
    """livekit aborts the whole process on such a frame: the canceller must never hand it
    over (this test would not get to its end otherwise)."""
    ec = EchoCanceller()
    ec.played(np.full(BLOCK, 3000, np.int16), RATE, 100.0)
    with caplog.at_level(logging.WARNING, logger="sarai.audio.echo"):
        for n in (481, 100, 479):
            frame = np.full(n, 500, np.int16)
            assert ec.clean(frame, 100.05) is frame
    assert "needs whole 10 ms" in caplog.text
    ok = np.full(FRAME, 500, np.int16)
    assert ec.clean(ok, 100.08).shape == (FRAME,)


def test_without_an_echo_path_the_microphone_goes_through(make_speech, caplog):
    """Headphones: nothing of SARAi reaches the microphone. AEC3 would hold the user down for
    its first seconds; the canceller notices there is no echo and passes the microphone on."""
    # The room was quiet for two seconds before SARAi spoke, as before any answer.
    ref = np.concatenate([np.zeros(2 * RATE, np.int16), _voice(make_speech)])
    person = read_audio(PROMPTS["en"] / "conf-hasleft.wav").samples.astype(np.float64)
    run = _room_mic(ref, echo=False, user=person, user_at_s=5.0, user_db=0.0)
    ec = EchoCanceller()
    with caplog.at_level(logging.INFO, logger="sarai.audio.echo"):
        out = _feed(ec, ref, run)
    assert not ec.echo_heard and not ec.converging
    assert "does not come back" in caplog.text
    span = slice(int(5.0 * SAMPLE_RATE), int(5.0 * SAMPLE_RATE) + len(person))
    assert np.array_equal(out[span], run.mic[span])


def test_a_canceller_that_steps_aside_changes_nothing():
    ec = EchoCanceller(EchoTiming(), cancel=False)
    ec.played(np.full(BLOCK, 3000, np.int16), RATE, 100.0)
    frame = np.full(FRAME, 700, np.int16)
    assert ec.clean(frame, 100.03) is frame
    assert ec.active(100.03) and not ec.converging


def test_importing_and_running_aec3_touches_no_network():
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is missing: apt-get install strace (make setup installs it)")
    code = ("import numpy as np; from sarai.audio.echo import EchoCanceller; "
            "ec = EchoCanceller(); "
            "ec.played(np.full(441, 3000, np.int16), 22050, 1.0); "
            "print(ec.clean(np.full(480, 500, np.int16), 1.03).shape)")
    proc = subprocess.run([strace, "-f", "-e", "trace=network", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(480,)" in proc.stdout
    calls = [line for line in proc.stderr.splitlines()
             if any(f"{c}(" in line
                    for c in ("socket", "socketpair", "connect", "sendto", "bind"))]
    assert calls, "strace saw no network calls at all: is it tracing?"
    assert not [c for c in calls if "AF_INET" in c], calls


def test_a_microphone_stamp_gone_astray_is_not_lost_audio(make_speech):
    """PulseAudio stamps a capture now and then 40-70 ms off (once in a while by over a
    second) while the samples come on time. Lining the reference up with such a stamp made
    AEC3 lose the delay it had found and let SARAi's voice through for half a second."""
    ref = _voice(make_speech)
    run = _room_mic(ref)
    ec = EchoCanceller()
    offsets = [0.06, -0.05, 0.07, 1.6, 0.04, -0.06, 0.05, 0.06]
    stray = dict(zip(range(150, 150 + 60 * len(offsets), 60), offsets, strict=True))
    _feed(ec, ref, run, stray=stray)
    for j in stray:
        at = (j + 1) * 0.03
        assert _reduction_db(run, at, at + 0.6) >= 25, (j, _reduction_db(run, at, at + 0.6))
    assert ec.restarts == 0


def _restarted(make_speech, *, paused: bool) -> tuple[Run, EchoCanceller, float]:
    """SARAi's voice, with the speaker's stream started again 6 s in. Through PulseAudio its
    device held 90-140 ms then (handed over, stamped as if it would be heard), which is
    thrown away, and the new stream's first block is heard within 20 ms of the restart.
    `paused`: SARAi paused there (the speaker says what it threw away, and the answer goes
    on after half a second where it was heard to); else the device ran dry and its stream
    was started again for it (nobody says so; the blocks thrown away are lost)."""
    voice = _voice(make_speech)
    held, at_s = 0.12, 6.0
    restart = 0.02 if paused else 0.0
    p = int(at_s * RATE) // BLOCK * BLOCK
    h = int(held * RATE) // BLOCK * BLOCK
    gap = np.zeros(int((0.5 if paused else restart) * RATE) // BLOCK * BLOCK, np.int16)
    heard = np.concatenate([voice[:p], gap, voice[p:] if paused else voice[p + h :]])
    run = _room_mic(heard)
    ec = EchoCanceller()
    t0 = 100.0
    played = np.concatenate([heard, np.zeros(len(run.mic) * RATE // SAMPLE_RATE, np.int16)])
    blocks = [(t0 + k * BLOCK / RATE, played[k * BLOCK : (k + 1) * BLOCK])
              for k in range(len(played) // BLOCK)]
    ghost = [(t0 + at_s + k * BLOCK / RATE, voice[p + k * BLOCK : p + (k + 1) * BLOCK])
             for k in range(h // BLOCK)]  # handed over, then thrown away
    out = np.zeros(len(run.mic) // FRAME * FRAME, np.int16)
    b, done = 0, False
    ahead = 0.1
    for j in range(len(run.mic) // FRAME):
        at = t0 + (j + 1) * FRAME / SAMPLE_RATE
        if not done and at >= t0 + at_s:
            if paused:
                ec.dropped(t0 + at_s)
            done = True
            b = int((at_s + restart) * RATE) // BLOCK  # the new stream's first block
        while not done and ghost and ghost[0][0] <= at + held and b * BLOCK >= p:
            ec.played(ghost[0][1], RATE, ghost[0][0])  # what the device holds of after it
            ghost.pop(0)
        while b < len(blocks) and blocks[b][0] <= at + ahead and (done or b * BLOCK < p):
            ec.played(blocks[b][1], RATE, blocks[b][0])
            b += 1
        out[j * FRAME : (j + 1) * FRAME] = ec.clean(run.mic[j * FRAME : (j + 1) * FRAME], at)
    run.out = out
    return run, ec, at_s + len(gap) / RATE


def test_audio_a_pause_threw_away_is_not_in_the_reference(make_speech):
    """A pause must be heard at once, so the speaker throws away what its device held and
    starts its stream again. Kept in the reference, that audio ran past the new stream's
    first blocks, and the reference was moved back under them, thrown-away audio and all:
    the answer's echo after the pause came through."""
    run, ec, resumed = _restarted(make_speech, paused=True)
    assert _reduction_db(run, resumed, resumed + 1.0) >= 25, \
        _reduction_db(run, resumed, resumed + 1.0)
    assert ec.restarts == 0


def test_a_stream_started_again_for_the_speaker_cuts_the_reference(make_speech):
    """A speaker whose device ran dry is started again by PortAudio: what it held is lost
    and its next block is stamped before the end of what the reference was given. That
    audio never played; the reference ends where the new stream begins."""
    run, ec, after = _restarted(make_speech, paused=False)
    assert _reduction_db(run, after, after + 1.0) >= 25, _reduction_db(run, after, after + 1.0)
    assert ec.restarts == 0
