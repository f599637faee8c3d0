"""What a GGUF file holds, read from its header, and what loading it will cost in RAM.

The value and tensor types come from the `gguf` package. Its GGUFReader materialises every
field, which takes tens of seconds on a vocabulary of 256k tokens, so the header is walked
here instead: scalars are decoded, arrays are skipped except the short numeric ones
(per-layer head counts), and tensor sizes come from the shapes and quantisation block sizes.
"""

from __future__ import annotations

import functools
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from sarai.models.errors import ModelError
from sarai.models.memory import MIB

_SCALARS: dict[int, str] = {
    gguf.GGUFValueType.UINT8: "<B", gguf.GGUFValueType.INT8: "<b",
    gguf.GGUFValueType.UINT16: "<H", gguf.GGUFValueType.INT16: "<h",
    gguf.GGUFValueType.UINT32: "<I", gguf.GGUFValueType.INT32: "<i",
    gguf.GGUFValueType.FLOAT32: "<f", gguf.GGUFValueType.BOOL: "<?",
    gguf.GGUFValueType.UINT64: "<Q", gguf.GGUFValueType.INT64: "<q",
    gguf.GGUFValueType.FLOAT64: "<d",
}
_MAX_ARRAY_KEPT = 512  # numeric arrays up to this length are kept (per-layer values)

# Bytes per KV-cache element for the cache types the settings allow (ggml block layouts).
KV_BYTES: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class GGUFInfo:
    """The facts about a model file that discovery shows and the RAM estimate needs."""

    path: Path
    size_bytes: int
    architecture: str
    name: str
    parameters: int  # sum of tensor elements
    tensor_bytes: int  # weights as stored: what decoding reads per token
    quantization: str  # e.g. Q4_K_M, from general.file_type
    context_length: int | None
    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int
    kv_heads: tuple[int, ...]  # per layer; 0 for layers without attention (LFM2's conv layers)
    key_length: int
    value_length: int
    meta: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_projector(self) -> bool:
        """A multimodal projector (mmproj), not a language model."""
        return self.architecture == "clip" or self.meta.get("general.type") == "mmproj"

    @property
    def parameters_label(self) -> str:
        label = self.meta.get("general.size_label")
        if isinstance(label, str) and label:
            return label
        n = self.parameters
        return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"

    def kv_cache_mb(self, n_ctx: int, kv_type: str = "f16") -> float:
        """Keys and values for `n_ctx` tokens in every attention layer."""
        per_token = sum(self.kv_heads) * (self.key_length + self.value_length)
        return n_ctx * per_token * KV_BYTES[kv_type] / MIB

    def estimate_mb(self, n_ctx: int, *, kv_type: str = "f16", n_batch: int = 512,
                    n_ubatch: int | None = None) -> Estimate:
        """RAM that loading this file with a context of `n_ctx` tokens will take."""
        weights = self.tensor_bytes / MIB
        kv = self.kv_cache_mb(n_ctx, kv_type)
        # llama.cpp's compute buffer: attention scores for one micro-batch against the whole
        # context, plus a part for activations, the output row and the runtime itself.
        # Within a few percent of the RSS measured on the starter models.
        ubatch = min(n_ubatch or n_batch, n_batch, n_ctx)
        compute = (ubatch * n_ctx * max(self.n_head, 1) * 4 + self.n_vocab * 4 * 2) / MIB
        compute += 0.05 * weights + 40.0
        return Estimate(weights_mb=weights, kv_mb=kv, compute_mb=compute)


@dataclass(frozen=True)
class Estimate:
    weights_mb: float
    kv_mb: float
    compute_mb: float
    projector_mb: float = 0.0

    @property
    def total_mb(self) -> float:
        return self.weights_mb + self.kv_mb + self.compute_mb + self.projector_mb

    @property
    def extra_mb(self) -> float:
        """Everything except the weights: what a second context on the same file adds."""
        return self.kv_mb + self.compute_mb + self.projector_mb


@dataclass(frozen=True)
class _Skipped:
    """An array whose items were not decoded (vocabularies, merges); only its length is kept."""

    count: int


class _Cursor:
    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.off, self.path = buf, 0, path

    def take(self, fmt: str) -> object:
        try:
            (value,) = struct.unpack_from(fmt, self.buf, self.off)
        except struct.error as exc:
            raise ModelError(f"{self.path} is truncated (GGUF header cut short)") from exc
        self.off += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = int(self.take("<Q"))  # type: ignore[arg-type]
        if self.off + n > len(self.buf):
            raise ModelError(f"{self.path} is truncated (GGUF header cut short)")
        raw = self.buf[self.off : self.off + n]
        self.off += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> object:
        if vtype == gguf.GGUFValueType.STRING:
            return self.string()
        if vtype == gguf.GGUFValueType.ARRAY:
            etype = int(self.take("<I"))  # type: ignore[arg-type]
            count = int(self.take("<Q"))  # type: ignore[arg-type]
            if etype in _SCALARS and count <= _MAX_ARRAY_KEPT:
                return [self.take(_SCALARS[etype]) for _ in range(count)]
            if etype in _SCALARS:  # skip long numeric arrays in one step
                self.off += count * struct.calcsize(_SCALARS[etype])
                return _Skipped(count)
            if etype == gguf.GGUFValueType.STRING:  # vocabularies: step over without decoding
                buf, off, unpack = self.buf, self.off, struct.Struct("<Q").unpack_from
                for _ in range(count):
                    off += 8 + unpack(buf, off)[0]
                self.off = off
                if off > len(buf):
                    raise ModelError(f"{self.path} is truncated (GGUF header cut short)")
                return _Skipped(count)
            for _ in range(count):
                self.value(etype)
            return _Skipped(count)
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise ModelError(f"{self.path}: unknown GGUF value type {vtype}")
        return self.take(fmt)


def _file_type_name(value: object) -> str:
    try:
        name = gguf.LlamaFileType(int(value)).name  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "unknown"
    return name.removeprefix("MOSTLY_")


def _tensor_bytes(ttype: int, n_elements: int, path: Path) -> int:
    try:
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: unknown tensor type {ttype}") from exc
    return n_elements // block * size


def read_info(path: Path) -> GGUFInfo:
    """Parse the header of the GGUF file at `path`; ModelError with the reason if it is not one.

    Results are cached per (path, size, mtime), so asking again about an unchanged file is free.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return _read_cached(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read_cached(path: Path, size: int, mtime_ns: int) -> GGUFInfo:  # noqa: ARG001
    try:
        with path.open("rb") as f:
            if size < 24 or f.read(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF model file")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, path, size)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (struct.error, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise ModelError(f"{path} is truncated or damaged (unreadable GGUF header)") from exc


def _parse(buf: mmap.mmap, path: Path, size: int) -> GGUFInfo:
    cur = _Cursor(buf, path)
    cur.off = 4
    version = cur.take("<I")
    if version not in (2, 3):
        raise ModelError(f"{path}: GGUF version {version} is not supported")
    n_tensors = int(cur.take("<Q"))  # type: ignore[arg-type]
    n_kv = int(cur.take("<Q"))  # type: ignore[arg-type]
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = cur.string()
        vtype = int(cur.take("<I"))  # type: ignore[arg-type]
        meta[key] = cur.value(vtype)
    params = tbytes = 0
    end = 0
    for _ in range(n_tensors):
        cur.string()
        n_dims = int(cur.take("<I"))  # type: ignore[arg-type]
        n = 1
        for _ in range(n_dims):
            n *= int(cur.take("<Q"))  # type: ignore[arg-type]
        ttype = int(cur.take("<I"))  # type: ignore[arg-type]
        offset = int(cur.take("<Q"))  # type: ignore[arg-type]
        nbytes = _tensor_bytes(ttype, n, path)
        params += n
        tbytes += nbytes
        end = max(end, offset + nbytes)
    align = int(meta.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT))  # type: ignore[call-overload]
    data_start = -(-cur.off // align) * align
    if data_start + end > size:
        raise ModelError(
            f"{path} is truncated: its tensors need {(data_start + end) / MIB:.1f} MiB "
            f"but the file has {size / MIB:.1f} MiB"
        )
    return _info(path, size, meta, params, tbytes)


def _int(meta: dict[str, object], key: str, default: int = 0) -> int:
    v = meta.get(key)
    if isinstance(v, list):
        return int(max(v)) if v else default
    return int(v) if isinstance(v, int | float) else default  # type: ignore[arg-type]


def _info(path: Path, size: int, meta: dict[str, object], params: int, tbytes: int) -> GGUFInfo:
    arch = str(meta.get("general.architecture", "unknown"))
    n_layer = _int(meta, f"{arch}.block_count")
    n_embd = _int(meta, f"{arch}.embedding_length")
    n_head = _int(meta, f"{arch}.attention.head_count")
    raw_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
    if isinstance(raw_kv, list):
        kv_heads = tuple(int(h) for h in raw_kv)
    else:
        kv_heads = (int(raw_kv or 0),) * n_layer  # type: ignore[call-overload]
    head_dim = n_embd // n_head if n_head else 0
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = _int(meta, f"{arch}.vocab_size")
    if not vocab and isinstance(tokens, _Skipped):
        vocab = tokens.count
    ctx = meta.get(f"{arch}.context_length")
    return GGUFInfo(
        path=path,
        size_bytes=size,
        architecture=arch,
        name=str(meta.get("general.name") or path.stem),
        parameters=params,
        tensor_bytes=tbytes,
        quantization=_file_type_name(meta.get("general.file_type")),
        context_length=int(ctx) if isinstance(ctx, int) else None,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_vocab=vocab,
        kv_heads=kv_heads,
        key_length=_int(meta, f"{arch}.attention.key_length", head_dim),
        value_length=_int(meta, f"{arch}.attention.value_length", head_dim),
        meta={k: v for k, v in meta.items() if not isinstance(v, _Skipped)},
    )
