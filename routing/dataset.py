"""The labelled routing data set shipped in routing/data: training and evaluation kept apart.

Each line of `train.jsonl` / `eval.jsonl` is one turn:
`{"lang": "en"|"es", "text": …, "tier": expected tier, "empathy": 0|1, "complex": 0|1}`
plus, optionally, `"rule"` (which explicit rule should fire: fast, think, sound, audio) and,
in the evaluation set, `"background": "music"|"noise"` for turns spoken over sound.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files

from sarai.models.settings import Tier
from sarai.routing.errors import DatasetError


class Split(StrEnum):
    TRAIN = "train"
    EVAL = "eval"


_LANGS = ("en", "es")
_BACKGROUNDS = ("music", "noise")
_RULES = ("fast", "think", "sound", "audio")


@dataclass(frozen=True)
class Row:
    text: str
    lang: str
    tier: Tier
    empathy: int
    complex: int
    rule: str | None = None
    background: str | None = None


def _data(split: Split):
    return files("sarai.routing").joinpath(f"data/{split.value}.jsonl")


def raw_bytes(split: Split) -> bytes:
    try:
        return _data(split).read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise DatasetError(f"the routing {split} set is missing from routing/data: {exc}") from exc


def fingerprint(split: Split) -> str:
    """SHA-256 of the file: a trained model is reused only for the data it was trained on."""
    return hashlib.sha256(raw_bytes(split)).hexdigest()


def _row(obj: object, where: str) -> Row:
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: each line must be a JSON object")
    try:
        text, lang, tier = obj["text"], obj["lang"], Tier(obj["tier"])
        empathy, cx = int(obj["empathy"]), int(obj["complex"])
    except KeyError as exc:
        raise DatasetError(f"{where}: missing field {exc}") from exc
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from exc
    rule, background = obj.get("rule"), obj.get("background")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: text must be a non-empty string")
    if lang not in _LANGS:
        raise DatasetError(f"{where}: lang must be one of {', '.join(_LANGS)}")
    if empathy not in (0, 1) or cx not in (0, 1):
        raise DatasetError(f"{where}: empathy and complex must be 0 or 1")
    if rule is not None and rule not in _RULES:
        raise DatasetError(f"{where}: rule must be one of {', '.join(_RULES)}")
    if background is not None and background not in _BACKGROUNDS:
        raise DatasetError(f"{where}: background must be one of {', '.join(_BACKGROUNDS)}")
    return Row(text, lang, tier, empathy, cx, rule, background)


def load(split: Split) -> list[Row]:
    """All rows of one split, validated; a bad line is reported with its number."""
    rows = []
    text = raw_bytes(split).decode("utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"routing/data/{split.value}.jsonl:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from exc
        rows.append(_row(obj, where))
    if not rows:
        raise DatasetError(f"the routing {split} set is empty")
    return rows
