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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from sarai.models.attachments import SAMPLE_RATE, MediaKind
from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError
from sarai.models.multimodal import MediaMessage

log = logging.getLogger(__name__)

_PLACEHOLDER = {MediaKind.AUDIO: "<|AUDIO|>", MediaKind.IMAGE: "<|IMAGE|>"}


class TransformersOmniBackend:
    """A Qwen2.5-Omni checkpoint run by transformers; streams the thinker's reply."""

    def __init__(self, path: Path, *, device: str = "cpu", dtype: str = "auto",
                 threads: int | None = None) -> None:
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
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a transformers checkpoint folder (no config.json)")
        if threads:
            torch.set_num_threads(threads)
        self.name = path.name
        self.path = path
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

    def stream(
        self,
        messages: Sequence[Message | MediaMessage],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        torch = self._torch
        inputs = {k: v.to(self.device) for k, v in self.inputs(messages).items()}
        self.last_prompt_tokens = int(inputs["input_ids"].shape[-1])
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True)

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw) -> bool:
                return cancel is not None and cancel.cancelled

        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {
            "do_sample": False}
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(
                        **inputs, max_new_tokens=max_tokens, streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled()]), **sampling,
                    )
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="omni-generate", daemon=True)
        worker.start()
        for text in streamer:
            if text:
                yield text
        worker.join()
        if failure:
            raise ModelError(f"{self.name}: generation failed: {failure[0]}") from failure[0]

    def close(self) -> None:
        self._model = None
