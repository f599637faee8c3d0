"""A waterfall of each turn's stages: where the time between speech and answer went.

Turn records carry `stages`, {stage: [start_ms, end_ms]} from the turn's zero (the end of
speech for spoken turns, the request for typed ones). A moment has start == end; a span
(ASR, routing, a model load, a barge-in) has start < end. One row per turn, oldest at the
top; spans are bars, moments are markers. Used by `sarai history --plot` and
`sarai bench voice --plot`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STAGES = ("end_of_speech", "request", "asr", "route", "model_load", "first_token",
          "first_audio", "first_answer_audio", "barge_in", "done")
LABELS = {
    "end_of_speech": "end of speech", "request": "request", "asr": "speech recognition",
    "route": "routing", "model_load": "model load", "first_token": "first token",
    "first_audio": "first audio", "first_answer_audio": "first answer audio",
    "barge_in": "barge-in", "done": "done",
}
# Colour-blind-safe (Okabe–Ito); moments also differ by marker shape.
COLORS = {
    "end_of_speech": "#000000", "request": "#000000", "asr": "#56B4E9", "route": "#F0E442",
    "model_load": "#CC79A7", "first_token": "#E69F00", "first_audio": "#009E73",
    "first_answer_audio": "#0072B2", "barge_in": "#D55E00", "done": "#555555",
}
MARKERS = {"end_of_speech": "|", "request": "|", "first_token": "o", "first_audio": "s",
           "first_answer_audio": "D", "done": "X"}
_BAR_HALF = 0.28


_FORMATS = (".png", ".svg", ".pdf")


def output_problem(path: Path) -> str | None:
    """Why a plot could not be written to `path` (checked before any work), or None."""
    if path.suffix.lower() not in _FORMATS:
        return f"{path}: a plot is written as {', '.join(_FORMATS)} (by the file's suffix)"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders still missing are made when the plot is saved
    if path.is_dir() or not os.access(folder, os.W_OK):
        return f"{path}: cannot write the plot there"
    return None


def with_stages(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The records that carry stage timings, and how many did not (older turn logs)."""
    kept = [r for r in records if isinstance(r.get("stages"), dict) and r["stages"]]
    return kept, len(records) - len(kept)


def read_turn_log(path: Path, last: int) -> list[dict[str, Any]]:
    """The last `last` records of a turn log (turns.jsonl); unreadable lines are skipped."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out[-max(1, last):]


def _row_label(i: int, rec: dict[str, Any]) -> str:
    text = (rec.get("transcript") or "").strip().replace("\n", " ")
    if len(text) > 28:
        text = text[:27] + "…"
    tier = rec.get("tier") or "-"
    return f"{i}. {tier}: \u201c{text}\u201d" if text else f"{i}. {tier}"


def _span(value: Any) -> tuple[float, float] | None:
    try:
        start, end = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    return (start, end) if end >= start else None


def plot_turns(records: list[dict[str, Any]], path: Path) -> Path:
    """Draw the stage waterfall of `records` (those without `stages` are skipped, and the
    figure says how many) into `path` (PNG, SVG or PDF by its suffix); returns `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    kept, skipped = with_stages(records)
    rows = max(1, len(kept))
    fig = Figure(figsize=(11, 1.6 + 0.55 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    seen: set[str] = set()
    right = 0.0
    for row, rec in enumerate(kept):
        stages = rec["stages"]
        ends = [s[1] for s in map(_span, stages.values()) if s is not None]
        if ends:  # a thin guide from the turn's zero to its last stage
            ax.plot([0, max(ends)], [row, row], color="#cccccc", linewidth=1, zorder=1)
        for name in STAGES:
            span = _span(stages.get(name))
            if span is None:
                continue
            start, end = span
            right = max(right, end)
            seen.add(name)
            if end > start:
                ax.broken_barh([(start, end - start)], (row - _BAR_HALF, 2 * _BAR_HALF),
                               facecolors=COLORS[name], edgecolor="#333333", linewidth=0.5,
                               alpha=0.9, zorder=2)
            else:
                ax.plot([start], [row], marker=MARKERS.get(name, "o"), color=COLORS[name],
                        markersize=11 if MARKERS.get(name) == "|" else 7,
                        markeredgewidth=2 if MARKERS.get(name) == "|" else 0.8,
                        markeredgecolor="#222222" if MARKERS.get(name) != "|" else COLORS[name],
                        linestyle="none", zorder=3)
        done = _span(stages.get("done"))
        if done is not None:
            ax.annotate(f"{done[1]:.0f} ms", (done[1], row), xytext=(8, 0),
                        textcoords="offset points", va="center", fontsize=8, color="#333333")
    ax.set_yticks(range(len(kept)), [_row_label(i + 1, r) for i, r in enumerate(kept)],
                  fontsize=8)
    ax.set_ylim(rows - 0.5, -0.5)  # the first turn on top
    ax.set_xlim(0, (right or 1000) * 1.12)
    ax.set_xlabel("milliseconds from the end of speech (typed turns: from the request)")
    ax.grid(axis="x", linestyle=":", color="#bbbbbb", zorder=0)
    handles = []
    for name in STAGES:
        if name not in seen:
            continue
        if name in MARKERS:
            handles.append(Line2D([], [], marker=MARKERS[name], color=COLORS[name],
                                  linestyle="none", markersize=8, label=LABELS[name]))
        else:
            handles.append(Patch(facecolor=COLORS[name], edgecolor="#333333",
                                 label=LABELS[name]))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5),
                   fontsize=8, frameon=False)
    title = f"SARAi: stages of {len(kept)} turn(s)"
    if skipped:
        title += f" ({skipped} older turn(s) without stage timings left out)"
    if not kept:
        ax.text(0.5, 0.5, "no turn with stage timings", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
