"""How turns are shown to a person in the terminal."""

from __future__ import annotations

from sarai.daemon.conversation.record import TurnRecord

_ORDER = ("asr", "route", "model_load", "ttft", "first_audio", "total")


def format_timings(timings: dict[str, float]) -> str:
    keys = [k for k in _ORDER if k in timings] + [k for k in timings if k not in _ORDER]
    return " · ".join(f"{k.replace('_', ' ')} {timings[k]:.0f} ms" for k in keys)


def format_turn(rec: TurnRecord) -> str:
    lines = []
    if rec.source in ("voice", "push"):
        lang = f"{rec.language}, " if rec.language else ""
        lines.append(f"heard:   \"{rec.transcript}\"  ({lang}{rec.audio_s or 0:.1f} s of speech)")
    if rec.tier:
        lines.append(f"tier:    {rec.tier} ({rec.model}) — {rec.reason}")
    elif rec.reason:
        lines.append(f"note:    {rec.reason}")
    if rec.reply:
        lines.append(f"reply:   {rec.reply}")
    if rec.error:
        lines.append(f"error:   {rec.error}")
    lines.append(f"timings: {format_timings(rec.timings)}")
    return "\n".join(lines)
