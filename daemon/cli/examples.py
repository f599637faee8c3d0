"""An example at the end of every command's --help, kept in one table so none is missed."""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, tuple[str, ...]] = {
    "setup": ("sarai setup", "sarai setup --only whisper-tiny-en --verify"),
    "ask": ('sarai ask "how are you?"', 'sarai ask --no-speak "what is 2+2?"',
            'sarai ask --image photo.png "what is this?"'),
    "listen": ("sarai listen --input question.wav --output answer.wav",
               "sarai listen --input question.wav --json"),
    "run": ("sarai run", "sarai run --json --max-turns 3"),
    "status": ("sarai status", "sarai status --json"),
    "mute": ("sarai mute",),
    "unmute": ("sarai unmute",),
    "mode": ("sarai mode            # print the mode", "sarai mode push       # push-to-talk"),
    "push": ("sarai push start; sleep 3; sarai push stop",),
    "history": ("sarai history -n 3", "sarai history --json",
                "sarai history --plot turns.png   # a waterfall of each turn's stages"),
    "forget": ("sarai forget", "sarai forget --log"),
    "quit": ("sarai quit",),
    "events": ("sarai events | grep --line-buffered '\"turn\"'",),
    "tray": ("sarai tray", "sarai tray --backend gtk"),
    "service": ("sarai service install --now", "sarai service status"),
    "devices": ("sarai devices", "sarai devices --json", "sarai devices test"),
    "devices test": ("sarai devices test",
                     'sarai devices test --input "Built-in Audio Analog Stereo"'),
    "hotkey": ("sarai hotkey", "sarai hotkey --key '<ctrl>+<alt>+space'"),
    "logs": ("sarai logs", "sarai logs -f", "sarai logs -n 200"),
    "completion": ("sarai completion bash > ~/.local/share/bash-completion/completions/sarai",
                   "sarai completion fish > ~/.config/fish/completions/sarai.fish",
                   "sarai completion zsh > ~/.zfunc/_sarai"),
    "models": ("sarai models list", "sarai models load omni_quality"),
    "models list": ("sarai models list", "sarai models list --json"),
    "models ps": ("sarai models ps", "sarai models ps --json"),
    "models load": ("sarai models load omni_quality",),
    "models unload": ("sarai models unload omni_quality",),
    "models pin": ("sarai models pin omni_fast --save", "sarai models pin omni_fast --off"),
    "models pull": ("sarai models pull qwen2.5-omni-3b",
                    "sarai models pull org/repo/file.gguf --tier tiny --sha256 HASH"),
    "route": ('sarai route --text "why is the sky blue?"',
              "sarai route --json --audio question.wav"),
    "bench": ("sarai bench voice", "sarai bench models --json"),
    "bench voice": ("sarai bench voice", "sarai bench voice --json --input-dir my-recordings/",
                    "sarai bench voice --plot stages.png"),
    "bench models": ("sarai bench models", "sarai bench models --tier omni_fast --runs 3"),
    "bench soak": ("sarai bench soak --turns 20",
                   "sarai bench soak --json   # 200 turns, about 40 min"),
    "bench turn": ("sarai bench turn", "sarai bench turn --sets en,es --limit 0 --json"),
    "bench room": ("sarai bench room", "sarai bench room --room office --speech-min 1 --json"),
    "bench router": ("sarai bench router", "sarai bench router --text-only --limit 50"),
    "config": ("sarai config show", "sarai config validate ~/.config/sarai/config.yaml"),
    "config show": ("sarai config show", "sarai --config my.yaml config show"),
    "config validate": ("sarai config validate ~/.config/sarai/config.yaml",),
}


class _ExamplesAsTyped(argparse.HelpFormatter):
    """Wraps the description as usual but prints the examples line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(("example:", "examples:")):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def subcommands(parser: argparse.ArgumentParser, prefix: str = ""
                ) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (path, parser) below `parser`, such as ("models pull", …)."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                path = f"{prefix} {name}".strip()
                out.append((path, p))
                out.extend(subcommands(p, path))
    return out


def add_examples(sub: argparse._SubParsersAction) -> None:
    """Append the examples to each registered command's help (and fill in a missing
    description from the one-line help)."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        _decorate(name, parser, helps.get(name))


def _decorate(path: str, parser: argparse.ArgumentParser, help_: str | None) -> None:
    examples = EXAMPLES.get(path)
    if examples and not parser.epilog:
        label = "example:" if len(examples) == 1 else "examples:"
        parser.epilog = "\n".join([label, *(f"  {e}" for e in examples)])
        cls = parser.formatter_class
        if not issubclass(cls, argparse.RawDescriptionHelpFormatter):  # type: ignore[arg-type]
            parser.formatter_class = type("WithExamples", (_ExamplesAsTyped, cls), {})
    if not parser.description and help_:
        parser.description = help_[0].upper() + help_[1:] + "."
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, p in action.choices.items():
                _decorate(f"{path} {name}", p, helps.get(name))
