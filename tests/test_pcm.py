"""Reading recordings of any common format into 16 kHz mono, and refusing broken ones."""

import numpy as np
import pytest
import soundfile as sf

from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE, read_audio, resample, timed_frames, write_wav


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (48000, 2), (8000, 1)])
def test_any_common_rate_and_channels_become_16k_mono(tmp_path, rate, channels):
    t = np.arange(int(rate * 1.5)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    path = tmp_path / "tone.wav"
    sf.write(path, data, rate, subtype="PCM_16")
    pcm = read_audio(path)
    assert pcm.sample_rate == SAMPLE_RATE
    assert pcm.samples.dtype == np.int16 and pcm.samples.ndim == 1
    assert pcm.duration_s == pytest.approx(1.5, abs=0.01)
    assert np.abs(pcm.samples).max() > 10000  # the tone survived conversion


def test_float_wav_is_read(tmp_path):
    path = tmp_path / "f.wav"
    sf.write(path, np.full(16000, 0.25, dtype=np.float32), 16000, subtype="FLOAT")
    assert read_audio(path).samples[100] == pytest.approx(8192, abs=2)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        read_audio(tmp_path / "nope.wav")


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio")
    with pytest.raises(AudioError, match="not a readable audio file"):
        read_audio(path)


def test_text_file_with_wav_name(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError, match="not a readable audio file"):
        read_audio(path)


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, np.int16), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        read_audio(path)


def test_resample_keeps_dtype_and_length():
    x = (np.random.default_rng(0).standard_normal(22050) * 1000).astype(np.int16)
    y = resample(x, 22050, 16000)
    assert y.dtype == np.int16 and len(y) == 16000


def test_timed_frames_cut_a_block_and_date_each_frame():
    block = np.arange(960 + 100, dtype=np.int16)  # two 30 ms frames and a remainder
    frames = list(timed_frames(block, 10.0, 30))
    assert [len(f) for f, _ in frames] == [480, 480, 100]
    assert np.array_equal(np.concatenate([f for f, _ in frames]), block)
    assert [round(at, 6) for _, at in frames] == [round(10.0 - 580 / 16000, 6),
                                                   round(10.0 - 100 / 16000, 6), 10.0]
    assert [len(f) for f, _ in timed_frames(block[:480], 1.0, 30)] == [480]
    assert list(timed_frames(block[:0], 1.0, 30)) == []
