"""webrtcvad cuts real speech (espeak-ng) into the right utterances."""

import numpy as np

from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.settings import VadSettings
from sarai.audio.vad import UtteranceSegmenter, split_utterances


def test_three_sentences_with_pauses_are_three_utterances(make_speech):
    wav = make_speech(["Good morning to you.", "What time is it now?", "Thank you very much."],
                      pause_s=1.2)
    utts = split_utterances(read_audio(wav).samples, VadSettings())
    assert len(utts) == 3
    starts = [u.start_s for u in utts]
    assert starts == sorted(starts)
    assert all(0.5 < u.duration_s < 4.0 for u in utts)
    assert all(u.speech_ratio > 0.4 for u in utts)


def test_short_pause_inside_a_sentence_does_not_split(make_speech):
    wav = make_speech(["I would like", "a cup of coffee please."], pause_s=0.3)
    assert len(split_utterances(read_audio(wav).samples, VadSettings())) == 1


def test_end_silence_threshold_decides(make_speech):
    wav = make_speech(["I would like", "a cup of coffee please."], pause_s=0.45)
    samples = read_audio(wav).samples
    assert len(split_utterances(samples, VadSettings(end_silence_ms=300))) == 2
    assert len(split_utterances(samples, VadSettings(end_silence_ms=900))) == 1


def test_silence_yields_nothing():
    assert split_utterances(np.zeros(SAMPLE_RATE * 3, np.int16), VadSettings()) == []


def test_preroll_keeps_the_start(make_speech):
    wav = make_speech(["Hello there."], lead_s=1.0)
    samples = read_audio(wav).samples
    (utt,) = split_utterances(samples, VadSettings(preroll_ms=300))
    # Speech begins at about 1.0 s; the utterance must include audio from before that.
    first_loud = np.argmax(np.abs(samples) > 500) / SAMPLE_RATE
    assert utt.start_s <= first_loud


def test_max_utterance_length_cuts(make_speech):
    wav = make_speech(["This sentence keeps going for quite a while, on and on, "
                       "without any real pause at all in the middle of it."], pause_s=0)
    utts = split_utterances(read_audio(wav).samples, VadSettings(max_utterance_s=2.0))
    assert len(utts) >= 2 and utts[0].truncated


def test_streaming_in_small_blocks_matches_whole_file(make_speech):
    wav = make_speech(["One two three.", "Four five six."], pause_s=1.0)
    samples = read_audio(wav).samples
    seg = UtteranceSegmenter(VadSettings())
    got = []
    for i in range(0, len(samples), 160):
        got += seg.push(samples[i : i + 160])
    got += seg.push(np.zeros(SAMPLE_RATE, np.int16)) + seg.flush()
    assert len(got) == 2 == len(split_utterances(samples, VadSettings()))


def _noise_and_music() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(SAMPLE_RATE * 2) * 3000).astype(np.int16)
    t = np.arange(SAMPLE_RATE * 3) / SAMPLE_RATE
    chord = np.sin(2 * np.pi * 440 * t) + np.where(t % 0.5 < 0.25, np.sin(2 * np.pi * 554 * t),
                                                   np.sin(2 * np.pi * 659 * t))
    return [noise, (3000 * chord).astype(np.int16)]


def test_silero_second_opinion_rejects_noise_that_webrtcvad_takes(make_speech):
    plain = VadSettings(second_opinion="none")
    checked = VadSettings(second_opinion="silero")
    for sound in _noise_and_music():
        assert split_utterances(sound, plain), "webrtcvad alone should take this for speech"
        assert split_utterances(sound, checked) == []
    speech = read_audio(make_speech(["Hello, how are you?"])).samples
    assert len(split_utterances(speech, checked)) == 1


def test_ten_minute_monologue_is_cut_at_the_maximum_length(make_speech):
    one = read_audio(make_speech(["I keep talking and talking without stopping at all"],
                                 lead_s=0.0)).samples
    ten_minutes = np.tile(one, int(600 * SAMPLE_RATE / len(one)) + 1)[: 600 * SAMPLE_RATE]
    utts = split_utterances(ten_minutes, VadSettings(max_utterance_s=30))
    assert len(utts) >= 19  # about 600 s / 30 s
    assert all(u.duration_s <= 30.5 for u in utts)
    assert sum(u.truncated for u in utts) >= 18
