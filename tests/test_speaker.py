"""The real speaker (PortAudio on a PulseAudio null sink, whose monitor the test records)."""

import time
import wave

import numpy as np


def _sounding(path) -> list[tuple[float, float]]:
    """(start, end) in seconds of each stretch of the recording with the tone in it."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    block = rate // 100  # 10 ms
    loud = [np.abs(a[i:i + block]).max() > 1000 for i in range(0, len(a) - block, block)]
    runs, start = [], None
    for i, on in enumerate([*loud, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start / 100, i / 100))
            start = None
    return runs


def _play_tone(speaker):
    """Two seconds of a 440 Hz tone on `speaker` (half a second after it opened), once its
    first sound is heard."""
    time.sleep(0.5)
    rate = speaker.RATE
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate)).astype(np.int16)
    session = speaker.session()
    session.play(tone, rate)
    session.finish()
    deadline = time.perf_counter() + 5
    while session.first_audio_at is None and time.perf_counter() < deadline:
        time.sleep(0.001)
    assert session.first_audio_at is not None
    return session


def test_a_pause_is_heard_at_once_and_resume_loses_nothing(pulse, monkeypatch, tmp_path):
    """The device's buffer (80 ms and a block) is thrown away on a pause, not played out, and
    what it held of the answer is said after the resume."""
    from sarai.audio.devices import SpeakerSink

    for key, value in pulse.env.items():
        monkeypatch.setenv(key, value)
    speaker = SpeakerSink()
    rec = pulse.record_speaker(tmp_path / "heard.wav")
    try:
        session = _play_tone(speaker)
        while time.perf_counter() < session.first_audio_at + 0.6:
            time.sleep(0.001)
        paused = time.perf_counter()
        speaker.pause()
        before = paused - session.first_audio_at
        assert speaker.stopped_at is not None and speaker.stopped_at - paused < 0.01
        time.sleep(0.5)
        speaker.resume()
        assert session.wait(5)
        time.sleep(0.5)
    finally:
        rec.terminate()
        rec.wait()
        speaker.close()
    runs = _sounding(tmp_path / "heard.wav")
    assert len(runs) == 2, runs  # the tone, the pause, the rest of the tone
    first, second = (end - start for start, end in runs)
    # Played out, the buffer would have sounded on for 100-120 ms after the pause (measured
    # here: 120 ms); thrown away, 10-40 ms of sound that had already left for the server.
    assert first - before < 0.07, (first, before)
    # What the device threw away is said after the resume: nothing of the tone is lost, and
    # what had already been heard of it (those 10-40 ms) is said twice at most.
    assert -0.02 < first + second - 2.0 < 0.07, (first, second)


def test_an_idle_speaker_stops_and_audio_or_a_wake_up_starts_it(pulse, monkeypatch, tmp_path):
    """With nothing to play for SLEEP_AFTER_S the stream stops (PortAudio calls nothing, the
    sound server mixes nothing) yet counts as alive; the next answer starts it again and is
    heard whole, and so does `wake()` (the user started talking), after which it sleeps again."""
    from sarai.audio.devices import SpeakerSink

    for key, value in pulse.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(SpeakerSink, "SLEEP_AFTER_S", 0.5)
    speaker = SpeakerSink()
    rec = pulse.record_speaker(tmp_path / "heard.wav")
    try:
        deadline = time.perf_counter() + 5
        while not speaker.asleep and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert speaker.asleep and speaker.sleeps == 1
        time.sleep(0.2)
        assert not speaker._stream.active and speaker.alive  # really stopped, not gone

        rate = SpeakerSink.RATE
        tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.int16)
        session = speaker.session()
        session.play(tone, rate)
        session.finish()
        assert session.wait(5) and not session.cut
        assert not speaker.asleep and speaker._stream.active

        while not speaker.asleep and time.perf_counter() < deadline + 5:
            time.sleep(0.01)
        assert speaker.sleeps == 2  # after the answer, idle again
        speaker.wake()
        deadline = time.perf_counter() + 2
        while speaker.asleep and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert speaker._stream.active  # ready before any audio is queued
        time.sleep(0.2)
        assert not speaker.asleep  # and it stays up a while (SLEEP_AFTER_S) for the answer
    finally:
        rec.terminate()
        rec.wait()
        speaker.close()
    runs = _sounding(tmp_path / "heard.wav")
    assert len(runs) == 1, runs
    start, end = runs[0]
    assert abs(end - start - 1.0) < 0.05, runs  # the whole second of tone, in one piece


def test_a_speaker_whose_callback_came_late_says_it_ran_dry(pulse, monkeypatch):
    """A thread holding the interpreter delays the speaker's callback past what its device
    holds: the device runs dry and plays silence. Whoever keeps the echo reference is told
    (`on_ran_dry`), with when the audio after the gap is heard."""
    import sys

    from sarai.audio.devices import SpeakerSink

    for key, value in pulse.env.items():
        monkeypatch.setenv(key, value)
    dry: list[float] = []
    speaker = SpeakerSink(on_ran_dry=dry.append)
    interval = sys.getswitchinterval()
    try:
        session = _play_tone(speaker)
        time.sleep(0.3)
        assert not dry and speaker.underflows == 0
        sys.setswitchinterval(1.0)  # this thread keeps the interpreter for 0.4 s
        held = time.perf_counter()
        while time.perf_counter() < held + 0.4:
            pass
        sys.setswitchinterval(interval)
        assert session.wait(5)
    finally:
        sys.setswitchinterval(interval)
        speaker.close()
    assert speaker.underflows >= 1 and len(dry) == speaker.underflows, (speaker.underflows, dry)
    assert held < dry[0] < held + 0.7, (held, dry)
