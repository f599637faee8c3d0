"""Pause at the first voiced frames, interrupt once confirmed, resume if it fades."""

from sarai.daemon.conversation.barge_in import BargeAction, BargeInDetector, BargeInTiming

T = BargeInTiming(frame_ms=30, pause_ms=60, confirm_ms=150, fade_ms=150)


def _feed(det: BargeInDetector, pattern: str, t0: float = 10.0) -> list[BargeAction]:
    return [det.feed(c == "x", t0 + 0.03 * (i + 1)) for i, c in enumerate(pattern)]


def test_sustained_speech_pauses_then_interrupts():
    det = BargeInDetector(T)
    acts = _feed(det, "..xxxxxxx")
    assert acts[3] is BargeAction.PAUSE  # second voiced frame: 60 ms of speech
    assert acts.index(BargeAction.INTERRUPT) == 8  # 2 + 5 voiced frames
    assert abs(det.onset - (10.0 + 0.03 * 3 - 0.03)) < 1e-9  # start of the first voiced frame


def test_short_gaps_inside_speech_do_not_reset_it():
    det = BargeInDetector(T)
    acts = _feed(det, "xx..xx.xxx")
    assert BargeAction.INTERRUPT in acts and BargeAction.RESUME not in acts


def test_a_burst_that_fades_resumes_playback():
    det = BargeInDetector(T)
    acts = _feed(det, "xxx.....")
    assert acts[1] is BargeAction.PAUSE
    assert BargeAction.RESUME in acts and BargeAction.INTERRUPT not in acts
    assert det.onset is None and not det.paused


def test_a_single_click_does_not_even_pause():
    det = BargeInDetector(T)
    assert set(_feed(det, "x......x......")) == {BargeAction.NONE}


def test_once_paused_a_candidate_is_given_longer_before_playback_resumes():
    """An echo canceller holds the user down for a while after the loudspeaker goes quiet:
    a paused candidate survives that silence, one that never paused does not."""
    timing = BargeInTiming(frame_ms=30, pause_ms=60, confirm_ms=150, fade_ms=150,
                           paused_fade_ms=450)
    det = BargeInDetector(timing)
    acts = _feed(det, "xx" + "." * 10 + "xxxxx")
    assert acts[1] is BargeAction.PAUSE
    assert BargeAction.RESUME not in acts and acts[-1] is BargeAction.INTERRUPT
    det = BargeInDetector(timing)
    acts = _feed(det, "xx" + "." * 15)
    assert acts[1] is BargeAction.PAUSE and acts.index(BargeAction.RESUME) == 16
    det = BargeInDetector(timing)
    assert set(_feed(det, "x.....x")) == {BargeAction.NONE}  # not paused: the short fade


def test_voice_held_while_the_echo_is_in_flight_counts_once_the_voice_goes_on():
    """Voiced frames just after the pause may be SARAi's echo still arriving ('f'): alone they
    confirm nothing, but a voice that goes on after them was the user's all along (a short
    "Stop." has little left once the echo has passed)."""
    timing = BargeInTiming(frame_ms=30, pause_ms=60, confirm_ms=150, fade_ms=150,
                           paused_fade_ms=450, after_ms=60)

    def feed(pattern: str) -> list[BargeAction]:
        det = BargeInDetector(timing)
        return [det.feed(c != ".", 10.0 + 0.03 * i, in_flight=c == "f")
                for i, c in enumerate(pattern)]

    acts = feed("xx" + "fffff" + "xx")
    assert acts[1] is BargeAction.PAUSE and acts[-1] is BargeAction.INTERRUPT
    assert BargeAction.INTERRUPT not in feed("xx" + "fffff" + "x" + "." * 3)
    acts = feed("xx" + "fffff" + "." * 12)  # the echo alone: the answer goes on
    assert BargeAction.RESUME in acts and BargeAction.INTERRUPT not in acts
    # Before a pause nothing is in flight: the flag changes nothing.
    assert feed("ff" + "xxxxx")[-1] is BargeAction.INTERRUPT
