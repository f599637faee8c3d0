"""The utterance splitter with its default settings on recorded human speech (not espeak-ng):
read prompts in English and Spanish with their natural pauses, spontaneous meeting speech,
and recorded music and animal noise that must not become turns. See tests/recordings.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from recordings import MUSIC, PROMPTS

from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.settings import VadSettings
from sarai.audio.vad import Utterance, split_utterances

# Multi-sentence prompts that exist in both languages, 5-18 s long, each with pauses of
# 0.26-0.48 s between its sentences: one turn each, never cut at those pauses.
TURNS = ["confbridge-mute-extended", "conf-usermenu", "vm-opts", "vm-newuser", "dir-intro-fn",
         "confbridge-lock-extended", "vm-invalid-password", "vm-instructions"]


def _speech_span(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample of 20 ms frames louder than -40 dBFS."""
    frames = samples[: len(samples) // 320 * 320].astype(np.float64).reshape(-1, 320)
    db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) / 32768 + 1e-9)
    loud = np.flatnonzero(db > -40)
    return int(loud[0]) * 320, (int(loud[-1]) + 1) * 320


def _room_noise(rng: np.random.Generator, n: int, dbfs: float) -> np.ndarray:
    return rng.standard_normal(n) * 32768 * 10 ** (dbfs / 20)


def _conversation(lang: str, *, noise_dbfs: float = -45, music: Path | None = None,
                  music_db: float = -25) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The prompts one after another with 1.0-1.8 s between them over a room's noise floor
    (optionally music from another room); returns the audio and each prompt's speech span."""
    rng = np.random.default_rng(7)
    parts = [_room_noise(rng, SAMPLE_RATE, noise_dbfs)]
    at, spans = len(parts[0]), []
    for name in TURNS:
        prompt = read_audio(PROMPTS[lang] / f"{name}.wav").samples.astype(np.float64)
        on, off = _speech_span(prompt)
        spans.append(((at + on) / SAMPLE_RATE, (at + off) / SAMPLE_RATE))
        gap = int(SAMPLE_RATE * rng.uniform(1.0, 1.8))
        parts += [prompt + _room_noise(rng, len(prompt), noise_dbfs),
                  _room_noise(rng, gap, noise_dbfs)]
        at += len(prompt) + gap
    audio = np.concatenate(parts)
    if music is not None:
        tune = read_audio(music).samples.astype(np.float64)
        tune = np.resize(tune, len(audio))  # loops if shorter
        audio += tune * 10 ** (music_db / 20)
    return np.clip(audio, -32768, 32767).astype(np.int16), spans


def _check_one_turn_each(utts: list[Utterance], spans: list[tuple[float, float]]) -> None:
    def overlapping(a: float, b: float) -> list[Utterance]:
        return [u for u in utts if u.start_s < b and u.start_s + u.duration_s > a]

    for (a, b), name in zip(spans, TURNS, strict=True):
        got = overlapping(a, b)
        assert len(got) == 1, f"{name}: {[(u.start_s, u.duration_s) for u in got]}"
        (u,) = got
        assert u.start_s <= a + 0.03, f"{name}: the first syllable was cut"
        assert u.start_s + u.duration_s >= b - 0.1, f"{name}: the end was cut"
    extra = [u for u in utts
             if not any(any(u is v for v in overlapping(a, b)) for a, b in spans)]
    assert not extra, f"turns out of nothing: {[(u.start_s, u.duration_s) for u in extra]}"


@pytest.mark.parametrize("lang", ["en", "es"])
def test_recorded_turns_are_one_utterance_each(recordings, lang):
    audio, spans = _conversation(lang)
    _check_one_turn_each(split_utterances(audio, VadSettings()), spans)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_recorded_turns_over_music_from_another_room(recordings, lang):
    audio, spans = _conversation(lang, music=MUSIC / "manolo_camp-morning_coffee.wav")
    _check_one_turn_each(split_utterances(audio, VadSettings()), spans)


@pytest.mark.parametrize("track", sorted(p.name for p in MUSIC.glob("*.wav")))
def test_recorded_music_is_not_a_turn(recordings, track):
    music = read_audio(MUSIC / track).samples[: 60 * SAMPLE_RATE]
    assert split_utterances(music, VadSettings(second_opinion="none")), \
        "webrtcvad alone takes music for speech; the check below would prove nothing"
    assert split_utterances(music, VadSettings()) == []


def test_recorded_animal_noise_is_not_a_turn(recordings):
    monkeys = read_audio(PROMPTS["en"] / "tt-monkeys.wav").samples
    assert split_utterances(monkeys, VadSettings(second_opinion="none"))
    assert split_utterances(monkeys, VadSettings()) == []


def test_spontaneous_speech_splits_only_at_its_long_pause(recordings):
    """chan3: 21 s of meeting speech whose pauses are 0.3-0.7 s, except one of about 1.3 s
    starting at 15.2 s. The default 700 ms end silence keeps the short ones inside a turn."""
    speech = read_audio(recordings / "chan3.wav").samples
    utts = split_utterances(speech, VadSettings())
    assert len(utts) == 2
    first, second = utts
    assert 15.0 < first.start_s + first.duration_s < second.start_s < 16.6
    assert first.start_s < 0.3 and second.start_s + second.duration_s > 20.5


def test_a_long_turn_with_quiet_stretches_is_not_taken_for_noise(recordings):
    """Silero judges a long utterance on windows spread over it: the middle of chan3 is its
    quietest stretch, and judging that alone threw the whole 21 s turn away."""
    speech = read_audio(recordings / "chan3.wav").samples
    (utt,) = split_utterances(speech, VadSettings(end_silence_ms=1500))
    assert utt.duration_s > 20
