"""Push-to-talk key strings: "<ctrl>+<alt>+space" → modifiers and an X keysym name.

Modifiers may be written with or without angle brackets, in any case: ctrl/control,
alt, shift, super (also win, meta, logo). The key is one X keysym name ("space", "F9",
"a", "Pause", "XF86AudioMicMute"). python-xlib's keysym table needs no display, so a key
string is checked the same way by `sarai config validate` and by the listener.
"""

from __future__ import annotations

from dataclasses import dataclass

MODIFIERS = {
    "ctrl": "ctrl", "control": "ctrl", "alt": "alt", "shift": "shift",
    "super": "super", "win": "super", "meta": "super", "logo": "super", "cmd": "super",
}
_ORDER = ("ctrl", "alt", "shift", "super")
_PORTAL_NAMES = {"ctrl": "CTRL", "alt": "ALT", "shift": "SHIFT", "super": "LOGO"}
_ALIASES = {"esc": "Escape", "enter": "Return", "return": "Return", "del": "Delete",
            "page_up": "Prior", "pageup": "Prior", "page_down": "Next", "pagedown": "Next",
            "backspace": "BackSpace", "capslock": "Caps_Lock", "scroll_lock": "Scroll_Lock",
            "print_screen": "Print", "printscreen": "Print"}


class HotkeyError(ValueError):
    """A key string that cannot be used; str() says why, for the user."""


@dataclass(frozen=True)
class Hotkey:
    modifiers: frozenset[str]
    key: str  # X keysym name
    keysym: int
    text: str  # as configured

    @property
    def label(self) -> str:
        """For menus: "Ctrl+Alt+Space"."""
        mods = [m.capitalize() for m in _ORDER if m in self.modifiers]
        key = self.key if len(self.key) > 1 else self.key.upper()
        return "+".join([*mods, key[:1].upper() + key[1:]])

    @property
    def portal_trigger(self) -> str:
        """The XDG shortcuts specification's form, the GlobalShortcuts portal's preferred
        trigger: "CTRL+ALT+space"."""
        return "+".join([*(_PORTAL_NAMES[m] for m in _ORDER if m in self.modifiers), self.key])


def _keysym(name: str) -> tuple[str, int]:
    from Xlib import XK

    candidates = [name, _ALIASES.get(name.lower(), name), name.lower(), name.capitalize(),
                  name.upper()]
    for c in candidates:
        sym = XK.string_to_keysym(c)
        if sym:
            return c, sym
    raise HotkeyError(f"unknown key {name!r} (X key names such as space, F9, a, Pause)")


def parse_hotkey(text: str) -> Hotkey:
    """Parse "<ctrl>+<alt>+space"; HotkeyError says what is wrong."""
    raw = text.strip()
    if not raw:
        raise HotkeyError("the key is empty")
    # "+" itself as the key: "<ctrl>++"
    parts = raw[:-2].split("+") + ["+"] if raw.endswith("++") else raw.split("+")
    parts = [p.strip() for p in parts]
    if any(not p for p in parts):
        raise HotkeyError(f"cannot read {text!r}: write it as modifiers and one key joined "
                          "by '+', e.g. '<ctrl>+<alt>+space'")
    mods: set[str] = set()
    key: str | None = None
    for part in parts:
        bare = part[1:-1] if part.startswith("<") and part.endswith(">") else part
        mod = MODIFIERS.get(bare.lower())
        if mod is not None:
            if mod in mods:
                raise HotkeyError(f"{bare!r} appears twice in {text!r}")
            mods.add(mod)
            continue
        if key is not None:
            raise HotkeyError(f"cannot read {text!r}: two keys ({key!r} and {bare!r}); one "
                              "key with any of ctrl, alt, shift, super")
        key = bare
    if key is None:
        raise HotkeyError(f"{text!r} has modifiers but no key")
    name, sym = _keysym(key)
    return Hotkey(frozenset(mods), name, sym, raw)
