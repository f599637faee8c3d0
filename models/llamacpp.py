"""In-process inference with llama-cpp-python on a GGUF file."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sarai.models.backend import CancelToken, Message, StreamingBackend
from sarai.models.chat_template import ChatTemplate, chat_handler, template_for
from sarai.models.errors import ModelError
from sarai.models.ggufinfo import GGUFInfo, read_info

log = logging.getLogger(__name__)


def check_gguf(path: Path) -> GGUFInfo:
    """What the GGUF file at `path` holds, or ModelError naming the path: missing, not a
    regular file (a folder, a device such as /dev/zero), not GGUF, or truncated."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read the model file {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise ModelError(f"model path {path} is a folder, not a GGUF model file")
    if not stat.S_ISREG(mode):
        raise ModelError(f"model path {path} is not a regular file (a device or a pipe), "
                         "not a GGUF model file")
    return read_info(path)


def open_llama(
    path: Path,
    *,
    n_ctx: int,
    threads: int | None,
    n_batch: int,
    use_mmap: bool,
    kv_type: str = "f16",
    n_ubatch: int | None = None,
) -> tuple[Any, ChatTemplate]:  # (llama_cpp.Llama, its template)
    """A llama-cpp-python model and context for `path`, prompted with its chat template, and
    that template; or ModelError with the reason (the file is checked, and its template found,
    before anything is loaded)."""
    template = template_for(check_gguf(path))
    import llama_cpp
    from llama_cpp import Llama

    kv = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0,
          "q4_0": llama_cpp.GGML_TYPE_Q4_0}
    if kv_type not in kv:
        raise ModelError(f"unknown KV cache type '{kv_type}' (use f16, q8_0 or q4_0)")
    threads = threads or os.cpu_count() or 1
    try:
        llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=min(n_batch, n_ctx),
            n_ubatch=min(n_ubatch or n_batch, n_batch, n_ctx),
            use_mmap=use_mmap,
            type_k=kv[kv_type],
            type_v=kv[kv_type],
            # llama.cpp quantises the V cache only with flash attention
            flash_attn=kv_type != "f16",
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load {path}: {exc}") from exc
    # Never llama-cpp-python's own fallback (the Llama-2 format), which other models echo.
    llm.chat_handler = chat_handler(template, llm)
    log.debug("%s is prompted with %s", path.name, template.source)
    return llm, template


def _log_prompt_read(name: str, held: np.ndarray, prompt: np.ndarray, started: float) -> None:
    """How much of a prompt llama.cpp had to read, and how much its KV cache already held."""
    n = min(len(held), len(prompt))
    differ = np.flatnonzero(held[:n] != prompt[:n])
    kept = int(differ[0]) if len(differ) else n
    log.debug("%s: first token after %.0f ms; %d tokens in context, %d read now, %d were held "
              "from the last prompt", name, (time.perf_counter() - started) * 1000,
              len(prompt), len(prompt) - kept, kept)


class LlamaCppBackend(StreamingBackend):
    """A GGUF model loaded with llama-cpp-python; streams chat completions."""

    # ValueError: e.g. a prompt longer than the context, or roles the template refuses.
    failures = (ValueError, RuntimeError)
    template: ChatTemplate

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 2048,
        threads: int | None = None,
        n_batch: int = 512,
        use_mmap: bool = True,
        kv_type: str = "f16",
        n_ubatch: int | None = None,
    ) -> None:
        super().__init__(path.name)
        self.path = path
        self.n_ctx = n_ctx
        self._llm, self.template = open_llama(path, n_ctx=n_ctx, threads=threads,
                                              n_batch=n_batch, use_mmap=use_mmap,
                                              kv_type=kv_type, n_ubatch=n_ubatch)

    def _generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        cancel: CancelToken | None,
    ) -> Iterator[str]:
        if self._llm is None:
            raise ModelError(f"{self.name} is closed")
        llm = self._llm
        held = llm._input_ids[: llm.n_tokens].copy() if log.isEnabledFor(logging.DEBUG) else None
        started = time.perf_counter()
        chunks = llm.create_chat_completion(
            messages=self.template.fit([m.as_dict() for m in messages]),
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
        )
        try:
            for chunk in chunks:
                if held is not None:
                    _log_prompt_read(self.name, held, llm._input_ids[: llm.n_tokens], started)
                    held = None
                yield chunk["choices"][0]["delta"].get("content") or ""
        finally:
            chunks.close()  # stops llama.cpp's decode loop

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None
