"""Finding where SARAi's echo sits against the reference (audio.echo_lag), on its own.

SARAi's voice (espeak-ng) reaches the microphone through a simulated office (audio.room) over
room noise; the finder gets the reference and the microphone 10 ms at a time, as AEC3 does.
"""

from __future__ import annotations

import functools

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from sarai.audio.echo_lag import FRAME, EchoLag
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.room import ROOMS, impulse_responses, pink_noise, scaled_to

TEXT = ("The lighthouse keeper climbed the stairs every evening to light the lamp. Ships "
        "passed far out at sea, and their captains counted on the beam to find the harbour.")


def _voice(make_speech) -> np.ndarray:
    data, rate = sf.read(str(make_speech([TEXT], rate=SAMPLE_RATE, lead_s=0.0)),
                         dtype="float64")
    assert rate == SAMPLE_RATE
    return data * 10000


@functools.cache
def _office() -> np.ndarray:
    return impulse_responses(ROOMS["office"]).speaker


def _echo(ref: np.ndarray, delay: int) -> np.ndarray:
    """The microphone: `ref` through the office, `delay` samples late, over its noise."""
    e = fftconvolve(ref, _office())[: len(ref)]
    e = np.concatenate([np.zeros(delay), e])[: len(ref)]
    e = scaled_to(e, -20.0)
    return e + pink_noise(len(ref), ROOMS["office"].noise_dbfs, np.random.default_rng(1))


def _feed(lag: EchoLag, ref: np.ndarray, mic: np.ndarray, start: int = 0,
          end: int | None = None) -> list[tuple[int, int]]:
    """Frames [start, end) of both; returns (frame, samples) for each move found."""
    moves = []
    for k in range(start, (end or len(ref) // FRAME)):
        frame = np.round(ref[k * FRAME : (k + 1) * FRAME]).astype(np.int16)
        lag.reference(frame, float(np.mean(frame.astype(np.float32) ** 2)))
        moved = lag.microphone(np.round(mic[k * FRAME : (k + 1) * FRAME]).astype(np.int16))
        if moved is not None:
            moves.append((k, moved))
    return moves


def test_the_echo_delay_is_measured_while_sarai_speaks(make_speech):
    ref = _voice(make_speech)
    found = []
    for delay in (800, 864):
        lag = EchoLag()
        assert _feed(lag, ref, _echo(ref, delay)) == []  # nothing asked it to look again
        assert lag.lag is not None
        found.append(lag.lag)
    assert found[1] - found[0] == 64, found  # to the sample
    assert 800 <= found[0] <= 900, found  # the delay and the room's direct path


def test_after_the_streams_are_lined_up_again_a_moved_echo_is_found_early(make_speech):
    """The reference stays; the echo comes back 100 samples earlier, then 180 later, then
    where it was: each time the first 200 ms of SARAi's voice say by how much."""
    ref = _voice(make_speech)
    n = len(ref) // FRAME
    third = n // 3
    lag = EchoLag()
    assert _feed(lag, ref, _echo(ref, 800), 0, third) == []
    learnt = lag.lag
    assert learnt is not None and not lag.unsure
    for delay, moved in ((700, -100), (980, 180), (800, 0)):
        lag.recheck()
        assert not lag.unsure  # until SARAi speaks again
        mic = _echo(ref, delay)
        moves = _feed(lag, ref, mic, third, third + 40)
        assert [m for _, m in moves] == [moved], (delay, moves)
        assert moves[0][0] - third < 30  # within 300 ms of the stretch's start
        assert not lag.unsure and lag.lag == learnt  # AEC3 is to find it where it learnt it
        _feed(lag, ref, _echo(ref, 800), third + 40, third + 60)


def test_without_an_echo_nothing_is_moved(make_speech):
    """Headphones: SARAi speaks, the microphone hears only the room. A recheck finds nothing,
    gives up, and moves nothing."""
    ref = _voice(make_speech)
    lag = EchoLag()
    _feed(lag, ref, _echo(ref, 800), 0, 300)
    lag.recheck()
    quiet = pink_noise(len(ref), ROOMS["office"].noise_dbfs, np.random.default_rng(2))
    assert _feed(lag, ref, quiet, 300) == []
    assert not lag.unsure


def test_a_person_talking_over_the_start_moves_nothing_wrongly(make_speech, tmp_path):
    """Someone else's voice, as loud as the echo, over the first second after the streams
    are lined up again: the echo did not move, and nothing moves."""
    ref = _voice(make_speech)
    other, rate = sf.read(str(make_speech(["Excuse me, could you stop for a moment please?"],
                                          rate=SAMPLE_RATE, lead_s=0.0, voice="en-us+f3")),
                          dtype="float64")
    assert rate == SAMPLE_RATE
    lag = EchoLag()
    mic = _echo(ref, 800)
    _feed(lag, ref, mic, 0, 300)
    lag.recheck()
    talk = scaled_to(other[: SAMPLE_RATE], -20.0)
    mic[300 * FRAME : 300 * FRAME + len(talk)] += talk
    assert [m for _, m in _feed(lag, ref, mic, 300, 400)] in ([], [0])
