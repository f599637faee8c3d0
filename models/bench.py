"""`sarai bench models`: how fast each tier answers through SARAi, next to bare llama-cpp-python.

For every configured tier: load time, time to first token, prompt and decode tokens/s and the
RSS the model added at its peak; then, in the same run, the same file with the same context
size, batch and thread count loaded with plain `llama_cpp.Llama`, so the ratio shows what
SARAi's layers cost. Decode speed is also set against the memory-bandwidth limit: a decoded
token reads every weight once, so tokens/s × bytes per token cannot exceed what the machine
can copy per second (measured here with numpy).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sarai.models import memory
from sarai.models.backend import Message
from sarai.models.chat_template import chat_handler, template_of
from sarai.models.errors import ModelError
from sarai.models.ggufinfo import read_info
from sarai.models.registry import ModelRegistry
from sarai.models.settings import BackendKind, Tier

# The seeds' KPIs (tokens/s of decode), checked only when the production model is present.
KPI_MIN_TOK_S: dict[Tier, float] = {Tier.OMNI_FAST: 7.0, Tier.TINY: 8.0, Tier.EXPERT: 3.0}

PROMPT = [
    Message("system", "You are a helpful assistant. Answer in plain sentences."),
    Message("user", "Describe, step by step, how a bicycle works and why it stays upright."),
]


@dataclass
class Run:
    """One reply, timed: load, then stream (times from perf_counter)."""

    load_s: float
    t0: float  # the request was made
    first: float  # first text arrived (0 if none)
    last: float  # last text arrived
    chunks: int
    text: str
    rss_mb: float  # peak RSS during load + reply, minus RSS before the load

    def figures(self, tokens: int, n_prompt: int | None) -> dict[str, float | None]:
        ttft = self.first - self.t0 if self.first else None
        decode = ((tokens - 1) / (self.last - self.first)
                  if tokens > 1 and self.last > self.first else None)
        prompt = n_prompt / ttft if n_prompt and ttft else None
        return {"load_s": round(self.load_s, 3),
                "ttft_ms": round(ttft * 1000, 1) if ttft is not None else None,
                "prompt_tok_s": _r(prompt), "decode_tok_s": _r(decode),
                "rss_mb": round(self.rss_mb, 1)}


def _r(x: float | None, nd: int = 2) -> float | None:
    return round(x, nd) if x is not None else None


def copy_bandwidth_gbs(size_mb: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth in GB/s as STREAM counts a copy: bytes read plus bytes written."""
    src = np.ones(size_mb * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in before timing
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


def _prefetch(path: Path) -> None:
    """Read the file once so neither contender pays for the first trip to disk."""
    with path.open("rb") as f:
        while f.read(8 << 20):
            pass


def _timed(load_s: float, before: memory.MemorySample, chunks: Iterable[Any],
           get_text: Callable[[Any], str]) -> Run:
    t0 = time.perf_counter()
    first = last = 0.0
    parts: list[str] = []
    for chunk in chunks:
        text = get_text(chunk)
        if not text:
            continue
        last = time.perf_counter()
        if not parts:
            first = last
        parts.append(text)
    rss = memory.sample().peak_mb - before.total_mb
    return Run(load_s, t0, first, last, len(parts), "".join(parts), rss)


def run_sarai(registry: ModelRegistry, tier: Tier, max_tokens: int) -> Run:
    """Load the tier through the registry and stream one reply, as a turn does."""
    memory.release_freed()
    memory.reset_peak()
    before = memory.sample()
    t = time.perf_counter()
    backend = registry.backend(tier)
    load_s = time.perf_counter() - t
    try:
        return _timed(load_s, before,
                      backend.stream(PROMPT, max_tokens=max_tokens, temperature=0.0),
                      lambda c: c)
    finally:
        registry.unload(tier, force=True)


class BareLlama:
    """Plain llama-cpp-python with the settings SARAi uses for the tier."""

    def __init__(self, path: Path, *, n_ctx: int, threads: int, n_batch: int,
                 use_mmap: bool, kv_type: str, n_ubatch: int) -> None:
        self.args: dict[str, Any] = {
            "model_path": str(path), "n_ctx": n_ctx, "n_threads": threads,
            "n_threads_batch": threads, "n_batch": min(n_batch, n_ctx),
            "n_ubatch": min(n_ubatch, n_batch, n_ctx), "use_mmap": use_mmap,
            "verbose": False,
        }
        if kv_type != "f16":
            import llama_cpp

            t = {"q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}[kv_type]
            self.args.update(type_k=t, type_v=t, flash_attn=True)
        # The same prompt as SARAi's: the chat template SARAi would use for this file.
        self.template = template_of(path)
        self.n_prompt = 0

    def run(self, max_tokens: int, other_text: str) -> tuple[Run, int, int]:
        """One reply; also the token counts of it and of `other_text` (SARAi's reply to the
        same prompt), with the same vocabulary, and the prompt's tokens (llama.cpp's count)."""
        import llama_cpp

        memory.release_freed()
        memory.reset_peak()
        before = memory.sample()
        t = time.perf_counter()
        llm = llama_cpp.Llama(**self.args)
        llm.chat_handler = chat_handler(self.template, llm)
        load_s = time.perf_counter() - t
        try:
            stream = llm.create_chat_completion(
                messages=[m.as_dict() for m in PROMPT], max_tokens=max_tokens,
                temperature=0.0, stream=True,
            )
            run = _timed(load_s, before, stream,
                         lambda c: c["choices"][0]["delta"].get("content") or "")
            self.n_prompt = int(llama_cpp.llama_perf_context(llm._ctx.ctx).n_p_eval)

            def count(text: str) -> int:
                return len(llm.tokenize(text.encode(), add_bos=False, special=True)) if text else 0

            return run, count(run.text), count(other_text)
        finally:
            llm.close()
            memory.release_freed()


def _median(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k in rows[0]:
        vals = [r[k] for r in rows if r[k] is not None]
        out[k] = round(statistics.median(vals), 3) if vals else None  # type: ignore[type-var]
    return out


def bench_tier(registry: ModelRegistry, tier: Tier, *, max_tokens: int, runs: int,
               bandwidth_gbs: float) -> dict[str, Any]:
    """One tier: SARAi and bare llama-cpp-python alternately, `runs` times; medians."""
    r = registry.resolve(tier)
    ts = registry.settings(tier)
    threads = ts.threads or os.cpu_count() or 1
    row: dict[str, Any] = {
        "tier": tier.value, "model": r.model, "backend": r.backend, "starter": r.starter,
        "n_ctx": ts.n_ctx, "threads": threads if r.backend.in_process else None,
    }
    if r.backend is not BackendKind.LLAMACPP or r.path is None:
        # A server or transformers: no bare llama.cpp comparison; each streamed chunk
        # counts as one token.
        sarai = [run_sarai(registry, tier, max_tokens) for _ in range(runs)]
        row.update(_median([s.figures(s.chunks, None) for s in sarai]))
        row.update(tokens=sarai[-1].chunks, bare_decode_tok_s=None, bare_ttft_ms=None,
                   bare_load_s=None, bare_rss_mb=None, ratio=None, bytes_per_token=None,
                   bandwidth_efficiency=None)
        return row
    _prefetch(r.path)
    bare = BareLlama(r.path, n_ctx=ts.n_ctx, threads=threads, n_batch=ts.n_batch,
                     use_mmap=ts.use_mmap, kv_type=ts.kv_type,
                     n_ubatch=ts.micro_batch(r.mmproj is not None))
    try:
        mine, theirs = [], []
        tokens = 0
        for _ in range(runs):
            s = run_sarai(registry, tier, max_tokens)
            b, bare_tokens, tokens = bare.run(max_tokens, s.text)
            mine.append(s.figures(tokens, bare.n_prompt))
            theirs.append(b.figures(bare_tokens, bare.n_prompt))
    finally:
        memory.release_freed()
    row.update(_median(mine))
    row["tokens"] = tokens
    row["prompt_tokens"] = bare.n_prompt
    row.update({f"bare_{k}": v for k, v in _median(theirs).items()})
    decode, bare_decode = row["decode_tok_s"], row["bare_decode_tok_s"]
    row["ratio"] = round(decode / bare_decode, 3) if decode and bare_decode else None
    # Every decoded token reads all weights once, plus the KV cache of the context so far
    # (on average the prompt and half the reply).
    info = read_info(r.path)
    ctx = min(bare.n_prompt + tokens / 2, ts.n_ctx)
    per_token = info.tensor_bytes + info.kv_cache_mb(1, ts.kv_type) * memory.MIB * ctx
    row["bytes_per_token"] = int(per_token)
    row["bandwidth_efficiency"] = (
        round(decode * per_token / (bandwidth_gbs * 1e9), 3) if decode else None
    )
    return row


def check_kpi(row: dict[str, Any]) -> None:
    """Add the seeds' KPI for the tier when its production model (not a starter) answered."""
    kpi = KPI_MIN_TOK_S.get(Tier(row["tier"]))
    applies = kpi is not None and not row.get("starter") and row.get("decode_tok_s") is not None
    row["kpi_min_tok_s"] = kpi if applies else None
    row["kpi_ok"] = (row["decode_tok_s"] >= kpi) if applies else None


def bench_models(registry: ModelRegistry, tiers: list[Tier], *, max_tokens: int = 64,
                 runs: int = 1, report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every tier in `tiers`; tiers sharing a file and settings are measured once."""
    bandwidth = copy_bandwidth_gbs()
    rows: list[dict[str, Any]] = []
    done: dict[tuple, dict[str, Any]] = {}
    for tier in tiers:
        r = registry.resolve(tier)
        ts = registry.settings(tier)
        same = (r.backend, str(r.path) if r.path else r.model, ts.n_ctx, ts.threads,
                ts.n_batch, ts.n_ubatch, ts.use_mmap, ts.kv_type)
        if report:
            report(f"{tier}: {r.model}" + (" (measured above)" if same in done else ""))
        try:
            if same in done:
                row = {**done[same], "tier": tier.value}
            else:
                row = done[same] = bench_tier(registry, tier, max_tokens=max_tokens,
                                              runs=runs, bandwidth_gbs=bandwidth)
        except ModelError as exc:
            row = {"tier": tier.value, "model": r.model, "error": str(exc)}
            for k in ("decode_tok_s", "bare_decode_tok_s", "ratio", "ttft_ms", "load_s",
                      "rss_mb", "bandwidth_efficiency"):
                row[k] = None
        check_kpi(row)
        rows.append(dict(row))
    checked = [r["kpi_ok"] for r in rows if r.get("kpi_ok") is not None]
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "copy_bandwidth_gbs": round(bandwidth, 2),
        "max_tokens": max_tokens,
        "runs": runs,
        "tiers": rows,
        "kpis_ok": all(checked) if checked else None,
    }


def save(result: dict[str, Any], bench_dir: Path) -> Path:
    """Write the run as bench/models-<UTC timestamp>.json; returns the path."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")  # as the other benchmarks name theirs
    path = bench_dir / f"models-{stamp}.json"
    n = 1
    while path.exists():  # two runs in one second
        n += 1
        path = bench_dir / f"models-{stamp}-{n}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
