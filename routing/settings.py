"""Settings for the router, built once from the config and passed in.

Everything a person might want to tune — thresholds, weights, which tier each kind of turn
prefers, the phrases that count as explicit requests — lives here rather than in code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sarai.models.settings import Tier


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Frozen):
    empathy: float = Field(0.8, ge=0, le=1, description="at or above: a social/empathetic turn")
    complexity: float = Field(
        0.5, ge=0, le=1, description="social turns at or above this are still complex"
    )
    quality: float = Field(0.5, gt=0, description="weighted need at or above → quality tier")


class Weights(_Frozen):
    """How much each signal adds to a turn's need for the quality tier."""

    complexity: float = Field(1.0, ge=0, description="× complexity score (0…1)")
    length: float = Field(
        0.5, ge=0, description="× words beyond short_max_words (0 at the limit, 1 at twice it)"
    )
    duration: float = Field(
        0.5, ge=0, description="× speech beyond long_audio_s (0 at the limit, 1 at twice it)"
    )


class TierPreferences(_Frozen):
    fast: Tier = Tier.OMNI_FAST
    quality: Tier = Tier.OMNI_QUALITY
    multimodal: tuple[Tier, ...] = Field(
        (Tier.OMNI_QUALITY, Tier.OMNI_FAST),
        min_length=1,
        description="tiers that can take attachments, best first",
    )


class AudioPolicy(_Frozen):
    """When the sound around the words matters more than the words (music, noise)."""

    heavy_background_dbfs: float = Field(
        -45.0, le=0, description="non-speech energy at or above this level can be audio-heavy"
    )
    heavy_max_snr_db: float = Field(
        15.0, description="…when the voice stands less than this many dB above it"
    )
    vad_aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad mode for the analysis")


class Phrases(_Frozen):
    """Phrases matched as whole words, case and accents ignored; '^' = at the start."""

    fast: tuple[str, ...] = (
        "answer quickly", "tell me quickly", "quickly explain", "quick answer", "quick one",
        "^quickly", "^quick", "briefly", "in short", "short answer", "in one word",
        "make it brief", "keep it short", "be brief",
        "responde rapido", "dimelo rapido", "contesta rapido", "^rapido", "brevemente",
        "en pocas palabras", "respuesta corta", "en una palabra", "resumido", "se breve",
    )
    think: tuple[str, ...] = (
        "think carefully", "think it through", "think hard", "think deeply", "think step by step",
        "take your time", "detailed answer", "think about it",
        "piensalo", "piensa bien", "piensa paso a paso", "tomate tu tiempo",
        "respuesta detallada", "reflexiona bien", "reflexiona",
    )
    sound: tuple[str, ...] = (
        "this sound", "that sound", "that noise", "this noise", "the noise", "what song",
        "which song", "song is this", "song is playing", "who is singing", "can you hear that",
        "do you hear that", "listen to this", "what instrument", "i m hearing", "what music",
        "kind of music",
        "este sonido", "ese sonido", "ese ruido", "este ruido", "que cancion", "cual cancion",
        "quien canta", "oyes eso", "escucha esto", "que instrumento", "se oye", "que musica",
        "tipo de musica",
    )


class Warmup(_Frozen):
    """Predictive warm-up of the quality tier while the user is still speaking."""

    enabled: bool = True
    after_speech_s: float = Field(6.0, gt=0, description="warm once speech runs this long")
    complexity: float = Field(
        0.5, ge=0, le=1, description="…or once the partial transcript scores this complex"
    )
    min_words: int = Field(3, ge=1, description="partial transcripts shorter are not scored")


class RoutingSettings(_Frozen):
    short_max_words: int = Field(25, ge=1, description="turns up to this many words are 'short'")
    long_audio_s: float = Field(12.0, gt=0, description="utterances longer than this are 'long'")
    thresholds: Thresholds = Thresholds()
    weights: Weights = Weights()
    tiers: TierPreferences = TierPreferences()
    audio: AudioPolicy = AudioPolicy()
    phrases: Phrases = Phrases()
    warmup: Warmup = Warmup()
