"""Which chat template a GGUF model is prompted with, decided before it is loaded.

A model answers sensibly only in the format it was trained on. The template comes from the
GGUF file when it carries one (`tokenizer.chat_template`); else from the known template of
its architecture (Gemma's, or ChatML for the Qwen family); else the model is refused with
the reason. llama-cpp-python on its own would fall back to the Llama-2 format, which a model
trained otherwise echoes back (`[INST] <<SYS>> …`) instead of answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sarai.models.errors import ModelError
from sarai.models.ggufinfo import GGUFInfo, read_info

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma's own template (google/gemma-3-*-it): Gemma has no system role, so a system message
# is folded into the first user turn, followed by a blank line; the assistant is "model".
GEMMA = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

KNOWN: dict[str, tuple[str, str]] = {
    # architecture (general.architecture) → (template name, template)
    "gemma": ("gemma", GEMMA),
    "gemma2": ("gemma", GEMMA),
    "gemma3": ("gemma", GEMMA),
    "gemma3n": ("gemma", GEMMA),
    "qwen2": ("chatml", CHATML),
    "qwen2vl": ("chatml", CHATML),
    "qwen3": ("chatml", CHATML),
    "qwen2moe": ("chatml", CHATML),
    "qwen3moe": ("chatml", CHATML),
}

# Text that only a template's own markup contains; a reply holding any of it echoes a prompt.
MARKERS = ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<start_of_turn>", "<end_of_turn>",
           "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class ChatTemplate:
    """The Jinja chat template a model is prompted with, and where it came from."""

    template: str
    source: str  # "the GGUF file", or "the known gemma template for gemma3"
    from_file: bool

    def render(self, messages: list[dict[str, Any]], *, bos_token: str = "",
               eos_token: str = "", name: str = "the model") -> str:
        """The prompt for `messages` (see `fit`), ending with the assistant's turn opened."""
        return _render(self.template, self.fit(messages), bos_token, eos_token, name)

    def fit(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`messages` as this template can take them: a system message after the first one
        (a note for this turn, e.g. which language to answer in) stays where it is when the
        template renders it there (ChatML and most others); where the template refuses it or
        leaves it out (Gemma's alternating roles), it is folded into the user message that
        follows, before its text and a blank line, as Gemma folds its system prompt."""
        if all(m["role"] != "system" for m in messages[1:]) or _late_system_ok(self.template):
            return messages
        out: list[dict[str, Any]] = []
        notes: list[str] = []
        for i, m in enumerate(messages):
            if i > 0 and m["role"] == "system":
                notes.append(m["content"])
            elif notes and m["role"] == "user" and isinstance(m["content"], str):
                out.append({**m, "content": "\n\n".join([*notes, m["content"]])})
                notes = []
            else:
                out.append(m)
        return out


def _render(template: str, messages: list[dict[str, Any]], bos_token: str, eos_token: str,
            name: str) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ModelError(f"{name}: chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, raise_exception=raise_exception,
        bos_token=bos_token, eos_token=eos_token,
    )


@lru_cache(maxsize=16)
def _late_system_ok(template: str) -> bool:
    """Does `template` render a system message that comes after the conversation began?"""
    note = "sarai-late-system-note"
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
             {"role": "assistant", "content": "a"}, {"role": "system", "content": note},
             {"role": "user", "content": "v"}]
    try:
        return note in _render(template, probe, "", "", "probe")
    except Exception:  # raise_exception, or a template that breaks on the unexpected role
        return False


def template_for(info: GGUFInfo) -> ChatTemplate:
    """The chat template for a model file; ModelError naming the file when there is none."""
    own = info.meta.get("tokenizer.chat_template")
    if isinstance(own, str) and own.strip():
        return ChatTemplate(own, "the GGUF file", True)
    known = KNOWN.get(info.architecture)
    if known is None:
        raise ModelError(
            f"{info.path.name} carries no chat template and its architecture "
            f"'{info.architecture}' has no known one, so it cannot be prompted correctly; "
            "use a GGUF file that includes its chat template"
        )
    name, template = known
    return ChatTemplate(template, f"the known {name} template for {info.architecture}", False)


def template_of(path: Path) -> ChatTemplate:
    """`template_for` the GGUF file at `path` (reads its header only)."""
    return template_for(read_info(path))


def chat_handler(template: ChatTemplate, llm: Any) -> Any:
    """A llama-cpp-python chat handler rendering `template` for the loaded model `llm`,
    stopping at its end-of-sequence token (end-of-turn tokens stop generation in llama.cpp)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    text = llm._model.token_get_text
    return Jinja2ChatFormatter(
        template=template.template,
        eos_token=text(eos_id) if eos_id != -1 else "",
        bos_token=text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id] if eos_id != -1 else None,
    ).to_chat_handler()
