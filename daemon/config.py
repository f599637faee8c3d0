"""The one configuration file: loaded, merged over the shipped defaults and validated at start.

Every error names the file, the line and the key, so a typo never surfaces later as a crash.
"""

from __future__ import annotations

from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sarai.audio.settings import AudioSettings
from sarai.daemon.desktop.settings import NotifySettings
from sarai.daemon.events import ListenMode
from sarai.daemon.service.settings import DaemonSettings
from sarai.models.settings import ModelsSettings, ResidencySettings
from sarai.routing.settings import RoutingSettings

DEFAULT_CONFIG_TEXT = files("sarai.daemon").joinpath("data/default_config.yaml").read_text("utf-8")


class ConfigError(Exception):
    """A configuration file that cannot be used; str() is the message for the user."""


class AssistantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompt: str
    history_turns: int = Field(4, ge=0, le=100)
    history_tokens: int = Field(600, ge=0, description="token budget for remembered turns")
    filler: dict[str, str] = Field(
        default_factory=lambda: {"en": "One moment…", "es": "Un momento…"},
        description="said while a model loads, per language",
    )
    spoken_max_sentences: int = Field(
        3, ge=0, description="at most this many sentences of an answer are spoken (0 = all)")
    spoken_max_s: float = Field(
        20.0, ge=0, description="…and at most about this many seconds (0 = no limit)")


class EchoMode(StrEnum):
    """Who keeps SARAi's own voice out of the microphone."""

    AUTO = "auto"  # the desktop's echo-cancelled microphone if there is one, else webrtc
    WEBRTC = "webrtc"  # SARAi's own canceller (WebRTC AEC3)
    DESKTOP = "desktop"  # the microphone is already echo-cancelled: do not cancel twice
    OFF = "off"  # nothing comes back (headphones)


class ListenSettings(BaseModel):
    """How the hands-free loop behaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ListenMode = ListenMode.ALWAYS
    wake_phrases: tuple[str, ...] = ("hey sarai", "oye sarai", "hola sarai", "ok sarai")
    follow_up_s: float = Field(8.0, ge=0, description="after a wake-phrase turn, no phrase needed")
    barge_in: bool = Field(True, description="speaking over SARAi stops it")
    barge_in_min_rms: float = Field(
        40.0, ge=0, description="the echo canceller's output quieter than this is not the user")
    barge_in_echo_ratio: float = Field(
        0.05, ge=0, le=1,
        description="…nor output below this share of the loudest heard in the last 300 ms")
    barge_in_pause_ms: int = Field(
        90, ge=10, description="speech over an answer this long pauses it at once"
    )
    barge_in_confirm_ms: int = Field(
        120, ge=0, description="…and this much more interrupts it (else it resumes)"
    )
    barge_in_warmup_min_rms: float = Field(
        300.0, ge=0, description="the floor while the echo canceller is still learning the room")
    barge_in_warmup_echo_ratio: float = Field(
        0.2, ge=0, le=1, description="the share while the echo canceller is still learning")
    echo_cancel: EchoMode = Field(EchoMode.AUTO, description="who cancels SARAi's own voice")

    @field_validator("echo_cancel", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML reads a bare `off` as false: that means off here."""
        return EchoMode.OFF if value is False else value
    echo_warmup_s: float = Field(
        12.0, ge=0, description="SARAi's speech a new echo canceller hears before it is trusted")
    echo_deaf_s: float = Field(
        3.0, ge=0, description="…and before anything heard over SARAi counts at all")
    speculate_pause_ms: int = Field(
        150, ge=0, description="start on a turn at a pause this long; 0 = wait for the end"
    )
    complete_silence_ms: int = Field(
        550, ge=0, description="silence from which a turn whose transcript reads as finished"
        " and whose sound the end-of-turn model takes for the end ends as soon as its answer"
        " is ready to be heard (0 = always wait for audio.vad.end_silence_ms)"
    )
    turn_model: str = Field(
        "smart-turn-v3.2", description="end-of-turn model: an installed name or a Smart Turn"
        " v3 .onnx path; 'none' = the words alone decide"
    )
    turn_model_threshold: float = Field(
        0.5, gt=0, lt=1, description="…which must give the end at least this probability"
    )
    device_retry_s: float = Field(3.0, gt=0, description="retry a missing microphone this often")
    hotkey: str | None = Field(
        None, description="global push-to-talk key, e.g. '<ctrl>+<alt>+space' (held: talk "
        "while held; tapped: talk until tapped again); null = none"
    )


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: Path | None = None
    assistant: AssistantSettings
    listen: ListenSettings = ListenSettings()
    audio: AudioSettings
    routing: RoutingSettings
    models: ModelsSettings
    residency: ResidencySettings = ResidencySettings()
    daemon: DaemonSettings = DaemonSettings()
    notify: NotifySettings = NotifySettings()


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node along `loc` in a composed YAML tree."""
    node, line = root, None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _parse(text: str, origin: str) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{origin}:{mark.line + 1}" if mark else origin
        raise ConfigError(f"{where}: not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from exc
    if data is None:
        return {}, tree
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}:1: the configuration must be a mapping of keys to values")
    return data, tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Path | None, *, required: bool = False) -> Config:
    """Defaults, overlaid with the file at `path` if there is one, validated.

    With `required`, a missing file is an error; otherwise it means "use the defaults".
    """
    defaults, default_tree = _parse(DEFAULT_CONFIG_TEXT, "default config")
    user: dict[str, Any] = {}
    user_tree = None
    origin = "default config"
    if path is not None:
        if path.is_file():
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read: {exc}") from exc
            user, user_tree = _parse(text, str(path))
            origin = str(path)
        elif required or path.exists():
            raise ConfigError(f"{path}: no such configuration file")
    try:
        return Config.model_validate(_merge(defaults, user))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(user_tree, loc)
        where = f"{origin}:{line}" if line else (
            origin if user_tree is not None else "default config"
        )
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{where}: {key}: {msg}{more}") from exc


def line_of(path: Path, *keys: str) -> str:
    """'FILE:LINE' of a key path in a configuration file (just 'FILE' if it is not there)."""
    try:
        _, tree = _parse(path.read_text("utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ConfigError):
        return str(path)
    line = _line_of(tree, keys)
    return f"{path}:{line}" if line else str(path)


def dump_config(config: Config) -> str:
    """The effective configuration as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
