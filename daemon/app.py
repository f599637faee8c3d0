"""Building the parts of SARAi from one validated configuration."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sarai.audio.asr import Transcriber
from sarai.audio.errors import AudioError
from sarai.audio.smart_turn import SmartTurn
from sarai.audio.text_language import TextLanguage
from sarai.audio.tts import VoiceBank
from sarai.daemon.config import Config
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.speech import SpokenLimits
from sarai.daemon.conversation.turn import Assistant
from sarai.daemon.paths import Paths
from sarai.models import starter
from sarai.models.registry import ModelRegistry
from sarai.models.resident import ResidentKind
from sarai.routing.availability import from_registry, media_from_registry
from sarai.routing.router import Router

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """What every command starts from."""

    config: Config
    paths: Paths

    @property
    def models_dir(self) -> Path:
        return (self.config.models_dir or self.paths.models_dir).expanduser()


def _starter_or_path(name: str, root: Path, kind: starter.Kind) -> Path:
    model = starter.CATALOGUE.get(name)
    if model is not None and model.kind is kind:
        return model.path(root)
    return Path(name).expanduser()


def asr_model_dirs(ctx: Context) -> dict[str, Path]:
    asr = ctx.config.audio.asr
    names = {asr.model_en, asr.model_multilingual}
    return {n: _starter_or_path(n, ctx.models_dir, starter.Kind.ASR) for n in names}


def voice_bank(ctx: Context) -> VoiceBank:
    def resolve(name: str) -> Path:
        return _starter_or_path(name, ctx.models_dir, starter.Kind.TTS)

    return VoiceBank(ctx.config.audio.tts, resolve)


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else list(path.glob("*")) if path.is_dir() else []
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def build_assistant(ctx: Context, *, hear: bool, speak: bool) -> Assistant:
    """An Assistant with ASR (if it must hear) and a voice (if it must speak) loaded.

    Both are loaded under the residency manager, so the one RAM budget sees what they hold.
    """
    cfg = ctx.config
    registry = ModelRegistry(cfg.models, ctx.models_dir, residency=cfg.residency)
    transcriber = Transcriber(cfg.audio.asr, asr_model_dirs(ctx)) if hear else None
    if transcriber is not None:
        for name in transcriber.model_names():  # both the English and the multilingual model
            folder = asr_model_dirs(ctx)[name]  # for `auto`
            with registry.residency.track(f"asr:{name}", name, ResidentKind.ASR,
                                          estimate_mb=_size_mb(folder)):
                transcriber.preload(name)
    end_of_turn = end_of_turn_model(ctx, registry) if hear else None
    voices = voice_bank(ctx) if speak else None
    if voices is not None:
        # onnxruntime holds about twice the voice file once its session is built.
        voice_mb = 2 * _size_mb(_starter_or_path(cfg.audio.tts.voice, ctx.models_dir,
                                                 starter.Kind.TTS))
        with registry.residency.track(f"tts:{cfg.audio.tts.voice}", cfg.audio.tts.voice,
                                      ResidentKind.TTS, estimate_mb=voice_mb):
            voices.preload()
    language = cfg.audio.asr.language
    return Assistant(
        system_prompt=cfg.assistant.system_prompt,
        registry=registry,
        router=Router(cfg.routing, cache_dir=ctx.paths.state_dir / "router",
                      availability=from_registry(registry),
                      takes_media=media_from_registry(registry)),
        memory=Conversation(cfg.assistant.history_turns, cfg.assistant.history_tokens),
        transcriber=transcriber,
        voices=voices,
        language="en" if language == "auto" else language,
        filler=cfg.assistant.filler,
        spoken=SpokenLimits(cfg.assistant.spoken_max_sentences, cfg.assistant.spoken_max_s),
        end_of_turn=end_of_turn,
        # With `auto`, a typed turn's own words say which language it is answered in.
        text_language=_typed_language(cfg, transcriber) if language == "auto" else None,
    )


def _typed_language(cfg: Config, transcriber: Transcriber | None) -> TextLanguage:
    """What reads a typed turn's language: the transcriber's own reader where it has one."""
    if transcriber is not None:
        return transcriber.text_language
    return TextLanguage(cfg.audio.asr.auto_languages)


def end_of_turn_model(ctx: Context, registry: ModelRegistry) -> SmartTurn | None:
    """The configured end-of-turn model, loaded; None (the words alone decide when a turn
    has ended) if it is switched off or cannot be loaded, which is said once."""
    name = ctx.config.listen.turn_model
    if name.lower() == "none":
        return None
    path = _starter_or_path(name, ctx.models_dir, starter.Kind.TURN)
    try:
        with registry.residency.track(f"asr:{name}", name, ResidentKind.ASR,
                                      estimate_mb=4 * _size_mb(path)):
            return SmartTurn(path)
    except AudioError as exc:
        log.warning("%s; a turn's end is judged by its words alone", exc)
        return None
