"""Real Whisper (faster-whisper) hears espeak-ng speech; real Piper speaks."""

import numpy as np
import pytest

from sarai.audio.asr import Transcriber
from sarai.audio.errors import AudioError
from sarai.audio.pcm import read_audio
from sarai.audio.settings import AsrSettings, TtsSettings
from sarai.audio.tts import Speaker
from sarai.models import starter


@pytest.fixture(scope="module")
def transcriber(models_dir):
    # Whisper's own 30 s window; the fitted window is tested in test_asr_window.py.
    dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en", "whisper-base")}
    return Transcriber(AsrSettings(fit_window=False), dirs)


@pytest.fixture(scope="module")
def speaker(models_dir):
    return Speaker(TtsSettings(), starter.CATALOGUE["piper-joe-en"].path(models_dir))


def test_english_transcript_has_the_key_words(transcriber, make_speech):
    wav = make_speech(["What is the capital of France?"])
    tr = transcriber.transcribe(read_audio(wav).samples)
    assert tr.model == "whisper-tiny-en"
    text = tr.text.lower()
    assert "capital" in text and "france" in text


def test_spanish_uses_the_multilingual_model(transcriber, make_speech):
    wav = make_speech(["Buenos días, ¿qué tiempo hace hoy en Madrid?"], voice="es-419", speed=120)
    tr = transcriber.transcribe(read_audio(wav).samples, language="es")
    assert tr.model == "whisper-base"
    text = tr.text.lower()
    assert "tiempo" in text and "madrid" in text


def test_missing_asr_model_is_a_clear_error(tmp_path):
    t = Transcriber(AsrSettings(), {"whisper-tiny-en": tmp_path / "none"})
    with pytest.raises(AudioError, match="not installed.*sarai setup"):
        t.transcribe(np.zeros(16000, np.int16))


def test_piper_audio_is_speech_of_plausible_length(speaker):
    text = "Hello, I am SARAi, and I am happy to help you today."
    audio = speaker.synthesize(text)
    seconds = len(audio) / speaker.sample_rate
    assert 1.5 < seconds < 8.0  # about 12 words
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 500  # not silent


def test_a_piece_cut_between_words_runs_on_without_the_sentence_pause(speaker):
    """The pause after a sentence or clause is not put after a piece that stops mid-sentence
    (a long first clause is cut between words, see audio.sentences): the next piece goes on."""
    def trailing_silence_ms(audio: np.ndarray) -> float:
        loud = np.flatnonzero(np.abs(audio) > 100)
        return 1000 * (len(audio) - 1 - loud[-1]) / speaker.sample_rate

    # Piper's own ending varies from one synthesis to the next (its noise is random, by
    # ±20 ms here): the median of three of each.
    cut = float(np.median([trailing_silence_ms(speaker.synthesize(
        "You can set your speaking volume")) for _ in range(3)]))
    sentence = float(np.median([trailing_silence_ms(speaker.synthesize(
        "You can set your speaking volume.")) for _ in range(3)]))
    assert sentence - cut > 0.8 * TtsSettings().sentence_silence_ms, (cut, sentence)


def test_piper_round_trip_through_whisper(speaker, transcriber):
    from sarai.audio.pcm import SAMPLE_RATE, resample

    audio = speaker.synthesize("The weather is sunny and warm.")
    tr = transcriber.transcribe(resample(audio, speaker.sample_rate, SAMPLE_RATE))
    assert "weather" in tr.text.lower()


def test_missing_voice_is_a_clear_error(tmp_path):
    with pytest.raises(AudioError, match="voice model not found"):
        Speaker(TtsSettings(), tmp_path / "nope.onnx")


def test_a_long_sentence_leaves_no_memory_behind(speaker):
    """onnxruntime's arena would keep the buffers of the longest sentence ever spoken (~300 MB
    for this one); the voice runs with arena shrinkage, so they go back after the sentence."""
    from sarai.models import memory

    speaker.synthesize("A short warm-up sentence.")
    memory.trim()
    before = memory.sample().anon_mb
    words = "and then we walked along the river and looked at the boats and the people "
    audio = speaker.synthesize((words * 6)[:400])
    assert len(audio) / speaker.sample_rate > 15  # it really spoke all of it
    memory.trim()
    kept = memory.sample().anon_mb - before
    assert kept < 60, f"synthesis kept {kept:.0f} MB"
