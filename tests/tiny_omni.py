"""Build a tiny random-weight Qwen2.5-Omni checkpoint and its GGUF files, for tests.

No Omni weights can be downloaded here, so the tests make their own: a Qwen2.5-Omni thinker
(text model, vision tower, audio tower) with the real architecture and the real Qwen2 tokenizer
but a few layers of width 64–128 and random weights. It is saved with `transformers`, then
converted by llama.cpp's own `convert_hf_to_gguf.py` (taken from the llama-cpp-python source
distribution on PyPI, the same version SARAi runs) into a text GGUF and an mmproj GGUF.

The answers are noise, but every path is real: the converter, libmtmd's audio and image
encoders, the transformers model classes. The result is cached under
`~/.cache/sarai/test-models/<hash of this file>/`, so it is built once per version of this file.

Run by hand: `.venv/bin/python tests/tiny_omni.py [CACHE_DIR]` prints the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP_VERSION = "0.3.36"
_SDIST = f"llama_cpp_python-{LLAMA_CPP_VERSION}"
# What the builder needs from the source distribution: the converter and its bundled gguf-py
# (the converter is written against that exact copy) and the Qwen2 vocabulary llama.cpp ships
# for its tokenizer tests.
_SDIST_MEMBERS = (
    "convert_hf_to_gguf.py", "conversion/", "gguf-py/", "models/ggml-vocab-qwen2.gguf",
)

# Qwen2.5-Omni's special tokens in id order after <|im_end|> (151645), as in its tokenizer.
_OMNI_SPECIAL = [
    "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|box_end|>", "<|quad_start|>",
    "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>", "<|IMAGE|>",
    "<|VIDEO|>",
]
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# ChatML with Qwen2.5-Omni's media placeholders, as its processor expects them.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'audio' %}{{ '<|audio_bos|><|AUDIO|><|audio_eos|>' }}"
    "{% elif part['type'] == 'image' %}{{ '<|vision_bos|><|IMAGE|><|vision_eos|>' }}"
    "{% elif part['type'] == 'video' %}{{ '<|vision_bos|><|VIDEO|><|vision_eos|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TEXT_HIDDEN = 128


@dataclass(frozen=True)
class TinyOmni:
    """Where the built files are."""

    hf_dir: Path  # transformers checkpoint (config, safetensors, tokenizer, processor)
    gguf: Path  # text model for llama.cpp
    mmproj: Path  # audio + vision projector for libmtmd


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sarai" / "test-models"


def builder_hash() -> str:
    """Changes whenever this file changes, so an edited builder never reuses old files."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def build(root: Path | None = None) -> TinyOmni:
    """The tiny model, built on first use and reused from the cache after that."""
    root = root or cache_root()
    out = root / f"tiny-qwen2.5-omni-{builder_hash()}"
    done = TinyOmni(out / "hf", out / "tiny-omni-f16.gguf", out / "mmproj-tiny-omni-f16.gguf")
    if (out / "DONE").is_file():
        return done
    for old in root.glob("tiny-qwen2.5-omni-*"):  # builds of earlier versions of this file
        shutil.rmtree(old, ignore_errors=True)
    tools = _converter(root)
    tmp = Path(tempfile.mkdtemp(prefix="tiny-omni-", dir=root))
    try:
        _save_checkpoint(tmp / "hf", tools / "models" / "ggml-vocab-qwen2.gguf")
        for mmproj, name in ((False, done.gguf.name), (True, done.mmproj.name)):
            cmd = [sys.executable, str(tools / "convert_hf_to_gguf.py"), str(tmp / "hf"),
                   "--outfile", str(tmp / name), "--outtype", "f16"]
            if mmproj:
                cmd.append("--mmproj")
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"convert_hf_to_gguf failed:\n{res.stderr[-3000:]}")
        (tmp / "DONE").write_text(json.dumps({"llama_cpp_python": LLAMA_CPP_VERSION}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


def _converter(root: Path) -> Path:
    """llama.cpp's converter from the llama-cpp-python sdist, fetched once with pip."""
    tools = root / f"llama.cpp-{LLAMA_CPP_VERSION}"
    if (tools / "convert_hf_to_gguf.py").is_file():
        return tools
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as d:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-d", d],
            check=True,
        )
        prefix = f"{_SDIST}/vendor/llama.cpp/"
        staging = Path(d) / "llama.cpp"
        with tarfile.open(Path(d) / f"{_SDIST}.tar.gz") as tar:
            for m in tar.getmembers():
                rel = m.name.removeprefix(prefix)
                if m.name.startswith(prefix) and rel.startswith(_SDIST_MEMBERS) and m.isfile():
                    m.name = rel
                    tar.extract(m, staging, filter="data")
        staging.rename(tools)
    return tools


def _tokenizer(vocab_gguf: Path):
    """Qwen2's byte-level BPE tokenizer rebuilt from llama.cpp's vocabulary file."""
    from gguf import GGUFReader
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    r = GGUFReader(str(vocab_gguf))
    tokens = r.fields["tokenizer.ggml.tokens"]
    types = r.fields["tokenizer.ggml.token_type"]
    merges = r.fields["tokenizer.ggml.merges"]
    vocab: dict[str, int] = {}
    specials: list[str] = []
    for i in range(len(tokens.data)):
        tok = tokens.contents(i)
        if tok.startswith("[PAD"):
            continue
        if types.contents(i) == 3:  # control token
            specials.append(tok)
        else:
            vocab[tok] = i
    merge_pairs = [tuple(merges.contents(i).split(" ", 1)) for i in range(len(merges.data))]
    tk = Tokenizer(models.BPE(vocab, merge_pairs, fuse_unk=False, byte_fallback=False))
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=[*specials, *_OMNI_SPECIAL],
    )
    # Qwen2_5OmniProcessor finds its placeholders through these attributes.
    fast.init_kwargs.update(
        audio_token="<|AUDIO|>", image_token="<|IMAGE|>", video_token="<|VIDEO|>",
        audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
        vision_bos_token="<|vision_bos|>", vision_eos_token="<|vision_eos|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _save_checkpoint(dest: Path, vocab_gguf: Path) -> None:
    import torch
    from transformers import (
        Qwen2_5OmniConfig,
        Qwen2_5OmniForConditionalGeneration,
        Qwen2VLImageProcessor,
        WhisperFeatureExtractor,
    )

    tok = _tokenizer(vocab_gguf)
    ids = {t: tok.convert_tokens_to_ids(t) for t in _OMNI_SPECIAL}
    if ids["<|AUDIO|>"] != 151646 or ids["<|VIDEO|>"] != 151656:
        raise RuntimeError(f"unexpected special token ids: {ids}")
    head_dim = TEXT_HIDDEN // 4
    thinker = {
        "text_config": {
            "vocab_size": 151936, "hidden_size": TEXT_HIDDEN, "intermediate_size": 256,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "tie_word_embeddings": True,
            # M-RoPE sections (time, height, width) must cover half a head.
            "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": [4, 6, 6]},
        },
        "audio_config": {
            "num_mel_bins": 128, "encoder_layers": 4, "encoder_attention_heads": 6,
            "encoder_ffn_dim": 1536, "d_model": 384, "output_dim": TEXT_HIDDEN,
            "max_source_positions": 1500, "n_window": 100,
        },
        "vision_config": {
            "depth": 4, "hidden_size": 384, "intermediate_size": 1536, "num_heads": 6,
            "out_hidden_size": TEXT_HIDDEN, "fullatt_block_indexes": [1, 3],
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
            "window_size": 112,
        },
        "tie_word_embeddings": True,
        # Ids the thinker's M-RoPE index needs, as in the published config.
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_token_id": 151654, "bos_token_id": 151644, "eos_token_id": 151645,
        "pad_token_id": 151643,
    }
    assert sum(thinker["text_config"]["rope_scaling"]["mrope_section"]) == head_dim // 2
    config = Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)
    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(config).eval()
    model.save_pretrained(dest, safe_serialization=True)
    # The name the published checkpoints carry, which is what the converter dispatches on
    # (save_pretrained writes the class name instead).
    cfg_path = dest / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["architectures"] = ["Qwen2_5OmniModel"]
    cfg_path.write_text(json.dumps(cfg, indent=2))
    # Saved one by one: Qwen2_5OmniProcessor insists on a video processor, and those need
    # torchvision, which has no build for the CPU torch this project installs.
    # Both share preprocessor_config.json, as in the published checkpoints.
    tok.save_pretrained(dest)
    audio = WhisperFeatureExtractor(
        feature_size=128, chunk_length=300, n_samples=4_800_000, nb_max_frames=30_000
    )
    pre = {**audio.to_dict(), **Qwen2VLImageProcessor().to_dict()}
    pre["processor_class"] = "Qwen2_5OmniProcessor"
    (dest / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))

if __name__ == "__main__":
    built = build(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(built.hf_dir.parent)
