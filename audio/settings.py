"""Settings for the audio stages, built once at start-up and passed in."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VadSettings(_Frozen):
    """How webrtcvad cuts a stream of 16 kHz audio into utterances."""

    aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad mode, 0 (lenient) to 3")
    frame_ms: Literal[10, 20, 30] = 30
    preroll_ms: int = Field(300, ge=0, le=2000, description="audio kept before speech starts")
    start_speech_ms: int = Field(150, ge=10, description="voiced audio needed to open a turn")
    min_speech_ms: int = Field(250, ge=10, description="shorter utterances are dropped as noise")
    end_silence_ms: int = Field(700, ge=100, description="silence that closes a turn")
    max_utterance_s: float = Field(30.0, gt=1.0, description="longer speech is cut here")
    second_opinion: Literal["silero", "none"] = Field(
        "silero", description="check closed utterances with Silero VAD to reject noise"
    )


class AsrSettings(_Frozen):
    """Speech recognition with faster-whisper (CTranslate2)."""

    language: str = Field(
        "auto", description="'auto': each turn in one of auto_languages (English first, on the"
        " fast English model); 'en', 'es', …: always that language"
    )
    auto_languages: tuple[str, ...] = Field(
        ("en", "es"), min_length=1, description="the languages 'auto' chooses between"
    )
    english_min_logprob: float = Field(
        -0.5, le=0.0, description="auto: the English model's transcript stands when its mean"
        " token log-probability is at least this; below, the multilingual model decides"
    )
    other_min_logprob: float = Field(
        -0.5, le=0.0, description="auto: where the English model was unsure yet the language"
        " guess leans English, the other language's transcript stands without an English one"
        " when its mean token log-probability is at least this and its words read as that"
        " language"
    )
    english_min_share: float = Field(
        0.3, ge=0.0, le=1.0, description="auto: …and takes English when English has at least"
        " this share of the probability among auto_languages"
    )
    english_sure_share: float = Field(
        0.99, ge=0.0, le=1.0, description="auto: where English has at least this share, the"
        " other language's transcript is taken only if its words read as that language"
    )
    model_en: str = Field("whisper-tiny-en", description="model for English turns")
    model_multilingual: str = Field("whisper-base", description="model for other languages")
    beam_size: int = Field(1, ge=1, le=10, description="beam for English")
    beam_size_other: int = Field(
        3, ge=1, le=10, description="beam for other languages (the multilingual model hears"
        " them better with a wider beam)"
    )
    threads: int = Field(2, ge=1)
    compute_type: str = "int8"
    fit_window: bool = Field(
        True, description="decode short turns on a window sized to them, not Whisper's 30 s"
    )
    min_window_s: float = Field(
        10.0, ge=5.0, le=30.0, description="shortest such window for the English model")
    min_window_s_multilingual: float = Field(
        6.0, ge=5.0, le=30.0, description="…and for the multilingual model")
    prompt: str = Field(
        "Hey SARAi.", description="text Whisper is told came just before an English turn (so"
        " it spells the assistant's name as in the wake phrases); empty = none"
    )


class TtsSettings(_Frozen):
    """Speech synthesis with Piper."""

    voice: str = Field("piper-joe-en", description="installed voice name or path to a .onnx")
    language: str = Field("en", description="the language `voice` speaks")
    voices: dict[str, str] = Field(
        default_factory=dict,
        description="voice per language, e.g. {es: path/es_ES-x.onnx}; 'espeak' = espeak-ng",
    )
    length_scale: float = Field(1.0, gt=0.1, lt=5.0, description=">1 speaks slower")
    sentence_silence_ms: int = Field(120, ge=0, le=2000)


class AudioSettings(_Frozen):
    """Everything the audio room needs."""

    input_device: str | int | None = Field(
        None, description="sounddevice name/index; null = default"
    )
    output_device: str | int | None = None
    mic_block_ms: int = Field(
        90, ge=10, le=200, description="audio per microphone wakeup while listening, a whole"
        " number of VAD frames (larger costs less CPU); while SARAi speaks it is one frame, so"
        " barge-in is noticed at once"
    )
    vad: VadSettings = VadSettings()
    asr: AsrSettings = AsrSettings()
    tts: TtsSettings = TtsSettings()

    @model_validator(mode="after")
    def _whole_frames(self) -> AudioSettings:
        if self.mic_block_ms % self.vad.frame_ms:
            raise ValueError(f"mic_block_ms ({self.mic_block_ms}) must be a multiple of"
                             f" vad.frame_ms ({self.vad.frame_ms})")
        return self
