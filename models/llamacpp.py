"""In-process inference with llama-cpp-python on a GGUF file."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Raise ModelError with a plain reason unless `path` looks like a usable GGUF file."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] != GGUF_MAGIC:
        raise ModelError(f"{path} is not a GGUF model file")
    if path.stat().st_size < 1024:
        raise ModelError(f"{path} is truncated ({path.stat().st_size} bytes)")


def open_llama(
    path: Path,
    *,
    n_ctx: int,
    threads: int | None,
    n_batch: int,
    use_mmap: bool,
    kv_type: str = "f16",
):  # -> llama_cpp.Llama
    """A llama-cpp-python model and context for `path`, or ModelError with the reason."""
    check_gguf(path)
    import llama_cpp
    from llama_cpp import Llama

    kv = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0,
          "q4_0": llama_cpp.GGML_TYPE_Q4_0}
    if kv_type not in kv:
        raise ModelError(f"unknown KV cache type '{kv_type}' (use f16, q8_0 or q4_0)")
    threads = threads or os.cpu_count() or 1
    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=min(n_batch, n_ctx),
            use_mmap=use_mmap,
            type_k=kv[kv_type],
            type_v=kv[kv_type],
            # llama.cpp quantises the V cache only with flash attention
            flash_attn=kv_type != "f16",
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load {path.name}: {exc}") from exc


class LlamaCppBackend:
    """A GGUF model loaded with llama-cpp-python; streams chat completions."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 2048,
        threads: int | None = None,
        n_batch: int = 512,
        use_mmap: bool = True,
        kv_type: str = "f16",
    ) -> None:
        self.name = path.name
        self.path = path
        self.n_ctx = n_ctx
        self._llm = open_llama(path, n_ctx=n_ctx, threads=threads, n_batch=n_batch,
                               use_mmap=use_mmap, kv_type=kv_type)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        try:
            chunks = self._llm.create_chat_completion(
                messages=[m.as_dict() for m in messages],
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            )
            for chunk in chunks:
                if cancel is not None and cancel.cancelled:
                    # Closing the generator stops llama.cpp's decode loop.
                    chunks.close()
                    return
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text
        except ValueError as exc:  # e.g. prompt longer than the context
            raise ModelError(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            self._llm = None
