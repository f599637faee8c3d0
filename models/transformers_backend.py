"""Qwen2.5-Omni with `transformers` (thinker only), behind the same streaming interface.

For users with a GPU: the checkpoint folder (config, safetensors, tokenizer, preprocessor
config) is loaded as its thinker alone (`Qwen2_5OmniThinkerForConditionalGeneration`): the
talker and the speech decoder are never built, since SARAi speaks replies with its own TTS.
Device and dtype come from the config.

The inputs are prepared the way `Qwen2_5OmniProcessor` does it (placeholders expanded to the
number of audio / image tokens), but from its parts, the tokenizer, `WhisperFeatureExtractor`
and `Qwen2VLImageProcessor`: the processor class insists on a video processor, and those need
torchvision, which does not load beside the CPU build of torch. A video arrives here, as in
the llama.cpp backend, as sampled frames plus its audio track.

A tier selects it with `backend: transformers` and `model:` the checkpoint folder; it is a
resident of the RAM budget like any other, its cost estimated from the thinker's tensors in
the safetensors headers (at the configured dtype) and its KV cache for `n_ctx` tokens.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from sarai.models.attachments import SAMPLE_RATE, MediaKind
from sarai.models.backend import CancelToken, Message, StreamingBackend
from sarai.models.errors import ModelError
from sarai.models.memory import MIB
from sarai.models.multimodal import MediaMessage
from sarai.models.resident import Cost

log = logging.getLogger(__name__)

_PLACEHOLDER = {MediaKind.AUDIO: "<|AUDIO|>", MediaKind.IMAGE: "<|IMAGE|>"}

# Bytes per element: as safetensors stores them, and as the configured dtype loads them.
_STORED = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
           "U8": 1, "BOOL": 1}
_LOADED = {"float32": 4, "bfloat16": 2, "float16": 2}


def check_checkpoint(path: Path) -> None:
    """ModelError naming `path` unless it is a transformers checkpoint folder."""
    if not path.exists():
        raise ModelError(f"checkpoint folder not found: {path}")
    if not path.is_dir():
        raise ModelError(f"{path} is not a transformers checkpoint folder (not a folder)")
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a transformers checkpoint folder (no config.json)")
    if not any(path.glob("*.safetensors")):
        raise ModelError(f"{path} has no .safetensors weights")


def _tensors(path: Path) -> dict[str, tuple[str, int]]:
    """Every tensor in the folder's safetensors files: name → (dtype, bytes), from headers."""
    out: dict[str, tuple[str, int]] = {}
    for f in sorted(path.glob("*.safetensors")):
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, struct.error, ValueError) as exc:
            raise ModelError(f"{f} is not a readable safetensors file ({exc})") from exc
        for name, t in header.items():
            if name != "__metadata__":
                start, end = t["data_offsets"]
                out[name] = (t["dtype"], end - start)
    return out


def estimate(path: Path, *, dtype: str, n_ctx: int, device: str = "cpu") -> Cost:
    """What loading the thinker of the checkpoint at `path` takes from the RAM budget:
    its tensors at `dtype` (the talker's are never loaded) and a KV cache of `n_ctx` tokens.
    On a GPU the weights and cache live in its memory, not in the budget. The first load in a
    process also maps torch's own libraries in; that is measured and charged after the load,
    like anything else a load turns out to take beyond its estimate."""
    check_checkpoint(path)
    tensors = _tensors(path)
    thinker = {k: v for k, v in tensors.items() if k.startswith("thinker.")} or tensors
    weights = 0.0
    for stored, nbytes in thinker.values():
        size = _STORED.get(stored, 2)
        weights += nbytes / size * _LOADED.get(dtype, size)
    try:
        config = json.loads((path / "config.json").read_text())
        text = config.get("thinker_config", config).get("text_config", {})
        heads = int(text["num_attention_heads"])
        head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
        per_token = (int(text["num_hidden_layers"]) * int(text.get("num_key_value_heads", heads))
                     * head_dim * 2 * _LOADED.get(dtype, 4))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        per_token = 0
    kv = n_ctx * per_token
    if device != "cpu":
        return Cost()
    return Cost(weights_mb=weights / MIB, extra_mb=kv / MIB)


class TransformersOmniBackend(StreamingBackend):
    """A Qwen2.5-Omni checkpoint run by transformers; streams the thinker's reply."""

    failures = (RuntimeError, ValueError, OSError)

    def __init__(self, path: Path, *, device: str = "cpu", dtype: str = "auto",
                 threads: int | None = None, n_ctx: int = 32768) -> None:
        try:
            import torch
            from transformers import (
                AutoTokenizer,
                Qwen2_5OmniConfig,
                Qwen2_5OmniThinkerForConditionalGeneration,
                Qwen2VLImageProcessor,
                WhisperFeatureExtractor,
            )
        except ImportError as exc:
            raise ModelError(
                "the transformers backend needs the omni extra: pip install 'sarai[omni]' "
                f"and torch ({exc.name} is missing)"
            ) from exc
        check_checkpoint(path)
        if threads:
            torch.set_num_threads(threads)
        super().__init__(path.name)
        self.path = path
        self.n_ctx = n_ctx
        self.device = device
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype, None)
        if torch_dtype is None:
            raise ModelError(f"unknown dtype '{dtype}' (use auto, float32, bfloat16, float16)")
        try:
            config = Qwen2_5OmniConfig.from_pretrained(str(path))
            # The checkpoint's "thinker." prefix is the thinker's base_model_prefix, so its
            # weights load directly and the talker's are never read.
            model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
                str(path), config=config.thinker_config, dtype=torch_dtype,
            )
            self._model = model.to(device).eval()
            self._tok = AutoTokenizer.from_pretrained(str(path))
            self._audio = WhisperFeatureExtractor.from_pretrained(str(path))
            self._image = Qwen2VLImageProcessor.from_pretrained(str(path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load {path.name} with transformers: {exc}") from exc
        self.last_prompt_tokens: int | None = None
        self._torch = torch

    def accepts(self) -> frozenset[MediaKind]:
        return frozenset({MediaKind.AUDIO, MediaKind.IMAGE})

    def inputs(self, messages: Sequence[Message | MediaMessage]) -> dict:
        """Token ids and encoder inputs for a conversation, as the Omni processor makes them."""
        conv, audios, images = [], [], []
        for m in messages:
            if isinstance(m, MediaMessage) and m.media:
                parts = []
                for a in m.media:
                    if a.kind is MediaKind.AUDIO:
                        audios.append(a.samples)
                    else:
                        import io

                        from PIL import Image

                        images.append(Image.open(io.BytesIO(a.data)).convert("RGB"))
                    parts.append({"type": a.kind.value})
                if m.content:
                    parts.append({"type": "text", "text": m.content})
                conv.append({"role": m.role, "content": parts})
            else:
                conv.append({"role": m.role, "content": m.content})
        text = self._tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        extra: dict = {}
        counts: dict[MediaKind, list[int]] = {MediaKind.AUDIO: [], MediaKind.IMAGE: []}
        if audios:
            feats = self._audio(audios, sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                                padding=True, return_tensors="pt")
            mask = feats["attention_mask"]
            _, out_len = self._model.audio_tower._get_feat_extract_output_lengths(
                mask.sum(-1))
            counts[MediaKind.AUDIO] = [int(n) for n in out_len]
            extra.update(input_features=feats["input_features"], feature_attention_mask=mask)
        if images:
            pix = self._image(images=images, return_tensors="pt")
            merge = self._image.merge_size**2
            counts[MediaKind.IMAGE] = [int(g.prod()) // merge for g in pix["image_grid_thw"]]
            extra.update(pixel_values=pix["pixel_values"], image_grid_thw=pix["image_grid_thw"])
        for kind, ns in counts.items():
            token = _PLACEHOLDER[kind]
            pieces = text.split(token)
            if len(pieces) - 1 != len(ns):
                raise ModelError(f"{self.name}: the chat template placed {len(pieces) - 1} "
                                 f"{kind} placeholders for {len(ns)} attachments")
            text = pieces[0] + "".join(token * n + rest for n, rest in zip(ns, pieces[1:],
                                                                           strict=True))
        enc = self._tok(text, return_tensors="pt", return_token_type_ids=False)
        return {**enc, **extra}

    def _generate(
        self,
        messages: Sequence[Message | MediaMessage],
        *,
        max_tokens: int,
        temperature: float,
        cancel: CancelToken | None,
    ) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        if self._model is None:
            raise ModelError(f"{self.name} is closed")
        torch = self._torch
        inputs = {k: v.to(self.device) for k, v in self.inputs(messages).items()}
        n_prompt = int(inputs["input_ids"].shape[-1])
        self.last_prompt_tokens = n_prompt
        if n_prompt + 1 > self.n_ctx:
            raise ModelError(f"{self.name}: the prompt is {n_prompt} tokens, more than the "
                             f"context ({self.n_ctx}); shorten it or raise n_ctx")
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()  # the reply was cancelled, or closed by its reader

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw) -> bool:
                return stop.is_set() or (cancel is not None and cancel.cancelled)

        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {
            "do_sample": False}
        failure: list[BaseException] = []
        model = self._model

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(
                        **inputs, max_new_tokens=min(max_tokens, self.n_ctx - n_prompt),
                        streamer=streamer, stopping_criteria=StoppingCriteriaList([_Stop()]),
                        **sampling,
                    )
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="omni-generate", daemon=True)
        worker.start()
        try:
            yield from streamer
        finally:
            # The model is not free for the next reply until its generate() has returned.
            stop.set()
            worker.join()
        if failure:
            raise ModelError(f"{self.name}: generation failed: {failure[0]}") from failure[0]

    def close(self) -> None:
        if getattr(self, "_model", None) is None:
            return
        self._model = None
        # A torch module holds reference cycles; collect now so its tensors go back at once
        # (the residency manager then returns freed heap to the system).
        import gc

        gc.collect()
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()
