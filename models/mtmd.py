"""Qwen2.5-Omni on llama.cpp with libmtmd: audio and images in the prompt, in order with text.

llama-cpp-python's chat handlers pass only images to libmtmd. This backend builds the prompt
itself: the model's chat template (the one its text turns use, see `models.chat_template`)
renders the conversation with one media marker per attachment,
`mtmd_helper_bitmap_init_from_buf` turns each attachment's bytes (WAV or PNG) into a bitmap,
`mtmd_tokenize` splits the prompt into text, audio and image chunks, and
`mtmd_helper_eval_chunks` encodes and decodes them with the right positions (M-RoPE for
Qwen2.5-Omni). Sampling then runs token by token on the same context.

Turns without attachments go through llama-cpp-python's ordinary chat completion, so the
projector stays unloaded until a turn needs it (see `models.projector`). The model registry
builds this backend for every llama.cpp tier with an `mmproj`, so a tier's text model is
loaded once whether its turns carry media or not.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sarai.models.attachments import MediaKind
from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError
from sarai.models.llamacpp import LlamaCppBackend, check_gguf
from sarai.models.multimodal import MediaMessage
from sarai.models.projector import Projector, ProjectorInfo, ProjectorSource

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PromptStats:
    """Token counts of the last multimodal prompt, by chunk type."""

    text: int
    audio: int
    image: int

    @property
    def total(self) -> int:
        return self.text + self.audio + self.image


_LOG_HOOK: list[object] = []  # the ctypes callback must outlive every call into libmtmd


def _quiet_mtmd() -> None:
    """Send libmtmd's per-chunk chatter to our debug log instead of stderr."""
    if _LOG_HOOK:
        return
    import llama_cpp
    from llama_cpp import mtmd_cpp

    @llama_cpp.llama_log_callback
    def hook(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        log.debug("mtmd: %s", text.decode("utf-8", "replace").rstrip())

    _LOG_HOOK.append(hook)
    mtmd_cpp.mtmd_log_set(hook, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(hook, ctypes.c_void_p(0))


ProjectorFactory = Callable[[Callable[[], object]], ProjectorSource]
"""Builds the projector for a text model, given a function returning its llama_model."""


class OmniBackend(LlamaCppBackend):
    """A GGUF text model plus an optional mmproj; streams chat completions with attachments.

    The projector is kept by a `Projector` of its own (`mmproj`, `mmproj_keep_s`), or by
    whatever `projector` builds: the model registry passes one that lives in its RAM budget.
    """

    def __init__(
        self,
        path: Path,
        *,
        mmproj: Path | None = None,
        mmproj_keep_s: float = 0.0,
        projector: ProjectorFactory | None = None,
        n_ctx: int = 4096,
        threads: int | None = None,
        n_batch: int = 512,
        use_mmap: bool = True,
        kv_type: str = "f16",
        on_projector_change: Callable[[ProjectorInfo], None] | None = None,
    ) -> None:
        if mmproj is not None:
            check_gguf(mmproj)
        _quiet_mtmd()
        threads = threads or os.cpu_count() or 1
        super().__init__(path, n_ctx=n_ctx, threads=threads, n_batch=n_batch,
                         use_mmap=use_mmap, kv_type=kv_type)
        self.n_batch = min(n_batch, n_ctx)
        self.projector: ProjectorSource | None = None
        if projector is not None:
            self.projector = projector(self.llama_model)
        elif mmproj is not None:
            self.projector = Projector(mmproj, self.llama_model, threads=threads,
                                       keep_s=mmproj_keep_s, on_change=on_projector_change)
        self.last_prompt: PromptStats | None = None

    def llama_model(self) -> object:
        """The loaded llama_model pointer, which libmtmd binds a projector to."""
        if self._llm is None:
            raise ModelError(f"{self.name} is closed")
        return self._llm.model

    # --- what it takes -----------------------------------------------------------------------

    def accepts(self) -> frozenset[MediaKind]:
        """Audio and images when a projector is configured (video arrives as both)."""
        if self.projector is None:
            return frozenset()
        info = self.projector.info()
        kinds = set()
        if info.audio is not False:
            kinds.add(MediaKind.AUDIO)
        if info.vision is not False:
            kinds.add(MediaKind.IMAGE)
        return frozenset(kinds)

    # --- chat --------------------------------------------------------------------------------

    def _generate(
        self,
        messages: Sequence[Message | MediaMessage],
        *,
        max_tokens: int,
        temperature: float,
        cancel: CancelToken | None,
    ) -> Iterator[str]:
        if not any(isinstance(m, MediaMessage) and m.media for m in messages):
            # No reset here: a multimodal turn leaves Llama's bookkeeping empty (so its KV
            # cells are cleared on the next eval), and between text turns the kept tokens are
            # the prompt cache that makes a warm system prompt cheap.
            yield from super()._generate(messages, max_tokens=max_tokens,
                                         temperature=temperature, cancel=cancel)
            return
        if self.projector is None:
            raise ModelError(f"{self.name} has no projector configured for audio or images")
        if self._llm is None:
            raise ModelError(f"{self.name} is closed")
        ctx = self.projector.acquire()
        try:
            n_past, used = self._eval_prompt(ctx, messages)
        finally:
            # The prompt is encoded; the projector is not needed to generate the reply.
            self.projector.release()
        yield from self._sample(n_past, min(max_tokens, self.n_ctx - used), temperature, cancel)

    # --- prompt ------------------------------------------------------------------------------

    def _render(self, messages: Sequence[Message | MediaMessage], marker: str) -> str:
        """The prompt in the model's own chat template (the one its text turns use), with one
        media marker per attachment before the message's text. No BOS here: libmtmd adds it
        as the vocabulary asks."""
        rows = []
        for m in messages:
            content = m.content
            if isinstance(m, MediaMessage) and m.media:
                content = marker * len(m.media) + ("\n" + content if content else "")
            rows.append({"role": m.role, "content": content})
        return self.template.render(rows, name=self.name)

    def _tokenize(self, ctx: int, messages: Sequence[Message | MediaMessage]) -> int:
        from llama_cpp import mtmd_cpp

        marker = mtmd_cpp.mtmd_default_marker().decode()
        text = self._render(messages, marker).encode()
        media = [a for m in messages if isinstance(m, MediaMessage) for a in m.media]
        bitmaps = []
        try:
            for a in media:
                buf = (ctypes.c_uint8 * len(a.data)).from_buffer_copy(a.data)
                bm = mtmd_cpp.mtmd_helper_bitmap_init_from_buf(ctx, buf, len(a.data), False)
                if not bm:
                    raise ModelError(f"the projector could not read {a.source.name} ({a.kind})")
                bitmaps.append(bm)
            inp = mtmd_cpp.mtmd_input_text()
            inp.text, inp.text_len = text, len(text)
            inp.add_special, inp.parse_special = True, True
            chunks = mtmd_cpp.mtmd_input_chunks_init()
            arr = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            rc = mtmd_cpp.mtmd_tokenize(ctx, chunks, ctypes.byref(inp), arr, len(bitmaps))
            if rc != 0:
                mtmd_cpp.mtmd_input_chunks_free(chunks)
                why = {1: "the number of attachments and markers differ",
                       2: "an attachment could not be preprocessed"}.get(rc, f"error {rc}")
                raise ModelError(f"{self.name}: cannot build the multimodal prompt: {why}")
            return chunks
        finally:
            for bm in bitmaps:
                mtmd_cpp.mtmd_bitmap_free(bm)

    @staticmethod
    def _stats(chunks: int) -> PromptStats:
        from llama_cpp import mtmd_cpp

        counts = {0: 0, 1: 0, 2: 0}
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            kind = mtmd_cpp.mtmd_input_chunk_get_type(chunk)
            counts[kind] = counts.get(kind, 0) + mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)
        return PromptStats(text=counts[mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT],
                           audio=counts[mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_AUDIO],
                           image=counts[mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE])

    def _eval_prompt(self, ctx: int, messages) -> tuple[int, int]:
        """Encode and decode the prompt; returns (next position, KV cells used)."""
        import llama_cpp
        from llama_cpp import mtmd_cpp

        chunks = self._tokenize(ctx, messages)
        try:
            stats = self._stats(chunks)
            self.last_prompt = stats
            if stats.total + 1 > self.n_ctx:
                raise ModelError(
                    f"{self.name}: the prompt with its attachments is {stats.total} tokens, "
                    f"more than the context ({self.n_ctx}); shorten the audio or raise n_ctx"
                )
            # Our decoding bypasses Llama's own token bookkeeping, so start from a clean slate.
            self._llm.reset()
            self._llm._ctx.kv_cache_clear()
            new_n_past = llama_cpp.llama_pos(0)
            rc = mtmd_cpp.mtmd_helper_eval_chunks(
                ctx, self._llm._ctx.ctx, chunks, 0, 0, self.n_batch, True,
                ctypes.byref(new_n_past),
            )
            if rc != 0:
                raise ModelError(f"{self.name}: encoding the attachments failed (error {rc})")
            log.debug("multimodal prompt: %s", stats)
            # With M-RoPE an image uses fewer positions than tokens, so both are tracked.
            return new_n_past.value, stats.total
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)

    # --- generation --------------------------------------------------------------------------

    def _sample(self, n_past: int, max_tokens: int, temperature: float,
                cancel: CancelToken | None) -> Iterator[str]:
        import llama_cpp

        lctx = self._llm._ctx.ctx
        vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        smpl = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if temperature <= 0:
            llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_greedy())
        else:
            llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_top_k(40))
            llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_top_p(0.95, 1))
            llama_cpp.llama_sampler_chain_add(smpl, llama_cpp.llama_sampler_init_temp(temperature))
            llama_cpp.llama_sampler_chain_add(
                smpl, llama_cpp.llama_sampler_init_dist(llama_cpp.LLAMA_DEFAULT_SEED))
        batch = llama_cpp.llama_batch_init(1, 0, 1)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for _ in range(max_tokens):
                if cancel is not None and cancel.cancelled:
                    return
                tok = llama_cpp.llama_sampler_sample(smpl, lctx, -1)
                if llama_cpp.llama_vocab_is_eog(vocab, tok):
                    break
                text = utf8.decode(self._llm.detokenize([tok]))
                if text:
                    yield text
                batch.n_tokens = 1
                batch.token[0] = tok
                batch.pos[0] = n_past
                batch.n_seq_id[0] = 1
                batch.seq_id[0][0] = 0
                batch.logits[0] = True
                if llama_cpp.llama_decode(lctx, batch) != 0:
                    raise ModelError(f"{self.name}: decoding failed")
                n_past += 1
            tail = utf8.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_sampler_free(smpl)
            # Llama's own bookkeeping does not know these tokens; the next turn starts clean.
            self._llm.reset()

    def close(self) -> None:
        if self.projector is not None:
            self.projector.close()
        super().close()
