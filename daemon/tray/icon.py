"""Drawing the tray icon: SARAi's state at a glance, and one mark per tier lit when resident.

The disc's colour and the glyph on it say what SARAi is doing (a microphone while listening,
crossed out when muted, sound waves while speaking, dots while thinking, a ring while a
model loads, '!' on error). Below it, one mark per tier in Tier order: lit when its model is
resident, with a dark pin head when pinned, dark when not loaded. Shape as well as colour differ,
so the states stay distinguishable for colour-blind users and on monochrome panels.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw

from sarai.daemon.events import State

SIZE = 64
DISC_CENTER = (32, 26)
DISC_RADIUS = 22
MARK_TOP, MARK_BOTTOM = 53, 63
MARK_WIDTH, MARK_GAP = 13, 3

COLORS: dict[State | None, tuple[int, int, int]] = {
    State.IDLE: (96, 96, 96),
    State.LISTENING: (46, 160, 67),
    State.HEARING: (0, 200, 150),
    State.THINKING: (235, 150, 0),
    State.SPEAKING: (30, 110, 230),
    State.LOADING: (140, 80, 200),
    State.MUTED: (110, 110, 110),
    State.ERROR: (215, 35, 35),
    None: (150, 150, 150),  # the daemon is not running
}
MARK_LIT = (255, 215, 0)
MARK_DARK = (60, 60, 60)
PIN = (90, 50, 0)
WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class TierMark:
    tier: str
    resident: bool
    pinned: bool = False


def mark_box(index: int, count: int) -> tuple[int, int, int, int]:
    """The rectangle of the index-th tier mark, the row centred under the disc."""
    total = count * MARK_WIDTH + (count - 1) * MARK_GAP
    left = (SIZE - total) // 2 + index * (MARK_WIDTH + MARK_GAP)
    return left, MARK_TOP, left + MARK_WIDTH - 1, MARK_BOTTOM - 1


def render_icon(state: State | None, marks: tuple[TierMark, ...] = ()) -> Image.Image:
    """The icon for `state` (None: the daemon is not running) with the tier marks."""
    img = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    cx, cy = DISC_CENTER
    r = DISC_RADIUS
    box = (cx - r, cy - r, cx + r, cy + r)
    color = COLORS[state]
    if state is None:
        d.ellipse(box, outline=color + (255,), width=4)
        _cross(d, cx, cy, 8, color + (255,), 4)
    else:
        d.ellipse(box, fill=color + (255,), outline=(20, 20, 20, 255), width=1)
        _GLYPHS[state](d, cx, cy)
    for i, m in enumerate(marks):
        x0, y0, x1, y1 = mark_box(i, len(marks))
        if m.resident:
            d.rectangle((x0, y0, x1, y1), fill=MARK_LIT + (255,), outline=(120, 90, 0, 255))
            if m.pinned:  # a pin head in the middle: it stays resident
                mx, my = (x0 + x1) // 2, (y0 + y1) // 2
                d.rectangle((mx - 2, my - 2, mx + 2, my + 2), fill=PIN + (255,))
        else:
            d.rectangle((x0, y0, x1, y1), fill=MARK_DARK + (255,), outline=(140, 140, 140, 255))
    return img


def _cross(d: ImageDraw.ImageDraw, cx: int, cy: int, half: int, fill, width: int) -> None:
    d.line((cx - half, cy - half, cx + half, cy + half), fill=fill, width=width)
    d.line((cx - half, cy + half, cx + half, cy - half), fill=fill, width=width)


def _mic(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    d.rounded_rectangle((cx - 5, cy - 13, cx + 5, cy + 3), radius=5, fill=WHITE)
    d.arc((cx - 9, cy - 8, cx + 9, cy + 8), start=0, end=180, fill=WHITE, width=2)
    d.line((cx, cy + 8, cx, cy + 13), fill=WHITE, width=2)
    d.line((cx - 5, cy + 13, cx + 5, cy + 13), fill=WHITE, width=2)


def _hearing(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    _mic(d, cx, cy)
    for dx in (-14, 14):  # small level bars either side: sound is coming in
        d.line((cx + dx, cy - 6, cx + dx, cy + 4), fill=WHITE, width=3)


def _muted(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    _mic(d, cx, cy)
    d.line((cx - 14, cy - 14, cx + 14, cy + 14), fill=(30, 30, 30, 255), width=7)
    d.line((cx - 14, cy - 14, cx + 14, cy + 14), fill=WHITE, width=3)


def _speaking(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    d.polygon([(cx - 14, cy - 5), (cx - 8, cy - 5), (cx - 1, cy - 11), (cx - 1, cy + 11),
               (cx - 8, cy + 5), (cx - 14, cy + 5)], fill=WHITE)
    for rad in (6, 12):
        d.arc((cx - rad, cy - rad, cx + rad, cy + rad), start=-50, end=50, fill=WHITE, width=3)


def _thinking(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    for dx in (-10, 0, 10):
        d.ellipse((cx + dx - 3, cy - 3, cx + dx + 3, cy + 3), fill=WHITE)


def _loading(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    d.arc((cx - 12, cy - 12, cx + 12, cy + 12), start=-90, end=180, fill=WHITE, width=4)
    d.polygon([(cx - 17, cy - 2), (cx - 7, cy - 2), (cx - 12, cy + 5)], fill=WHITE)


def _error(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    d.rectangle((cx - 2, cy - 14, cx + 2, cy + 4), fill=WHITE)
    d.rectangle((cx - 2, cy + 8, cx + 2, cy + 12), fill=WHITE)


def _idle(d: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    d.ellipse((cx - 4, cy - 4, cx + 4, cy + 4), fill=WHITE)


_GLYPHS = {
    State.IDLE: _idle, State.LISTENING: _mic, State.HEARING: _hearing,
    State.THINKING: _thinking, State.SPEAKING: _speaking, State.LOADING: _loading,
    State.MUTED: _muted, State.ERROR: _error,
}
