"""Models served by an Ollama server, through the official `ollama` client.

Ollama keeps models in its own process; SARAi's residency policy maps onto Ollama's
`keep_alive` (pinned: forever, ttl: the idle time, on_demand: until SARAi unloads it), and
what Ollama reports as loaded (`ps`) is shown beside SARAi's own residents.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

from sarai.models.backend import CancelToken, Message, StreamingBackend
from sarai.models.errors import ModelError, ModelUnavailable
from sarai.models.settings import Residency, TierSettings

DEFAULT_HOST = "http://127.0.0.1:11434"
_LOCAL = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def _client(host: str, timeout: float | None):
    import ollama

    return ollama.Client(host=host, timeout=timeout)


def is_local(host: str) -> bool:
    """A server on this machine: its models take RAM from the same budget."""
    return (urlparse(host if "://" in host else f"http://{host}").hostname or "") in _LOCAL


def keep_alive_for(ts: TierSettings) -> float | str:
    """Ollama's keep_alive for a tier's residency policy."""
    if ts.residency is Residency.TTL:
        return f"{int(round(ts.ttl_s))}s"
    # pinned and on_demand stay until SARAi says otherwise (keep_alive=0 on unload/eviction)
    return -1


def _matches(name: str, model: str) -> bool:
    return name in (model, f"{model}:latest")


def ollama_has_model(host: str, model: str, timeout: float = 1.0) -> tuple[bool, str]:
    """Whether the server at `host` answers and knows `model`; the second item says why not."""
    try:
        listing = _client(host, timeout).list()
    except Exception as exc:  # httpx.ConnectError, timeouts, bad URLs
        return False, f"Ollama at {host} is not reachable ({type(exc).__name__})"
    if any(_matches(m.model or "", model) for m in listing.models):
        return True, ""
    return False, f"Ollama at {host} has no model '{model}'"


def ollama_model_size(host: str, model: str, timeout: float = 1.0) -> int | None:
    """Bytes of `model` on the server's disk (from /api/tags), or None if unknown."""
    with contextlib.suppress(Exception):
        for m in _client(host, timeout).list().models:
            if _matches(m.model or "", model):
                return int(m.size or 0) or None
    return None


@dataclass(frozen=True)
class OllamaLoaded:
    """One model Ollama reports as loaded."""

    host: str
    model: str
    size_mb: float
    vram_mb: float
    expires_in_s: float | None  # None: never (keep_alive < 0)


def ollama_ps(host: str, timeout: float = 1.0) -> list[OllamaLoaded]:
    """What the server has loaded now; ModelUnavailable if it does not answer."""
    try:
        resp = _client(host, timeout).ps()
    except Exception as exc:
        raise ModelUnavailable(f"Ollama at {host} is not reachable ({type(exc).__name__})") from exc
    now = datetime.now(UTC)
    out = []
    for m in resp.models:
        exp = m.expires_at
        left: float | None = None
        # Ollama reports "forever" as a date centuries ahead.
        if exp is not None and exp.year < 2200:
            left = max((exp - now).total_seconds(), 0.0)
        out.append(OllamaLoaded(host, m.model or m.name or "?", (m.size or 0) / 2**20,
                                (m.size_vram or 0) / 2**20, left))
    return out


class OllamaBackend(StreamingBackend):
    """Streams chat replies from Ollama; residency maps to Ollama's own `keep_alive`."""

    # The client raises httpx's errors, its own ResponseError, and more for bad hosts.
    failures = (Exception,)

    def __init__(self, host: str, model: str, *, n_ctx: int, keep_alive: float | str,
                 timeout: float | None = None) -> None:
        super().__init__(model)
        self.host = host
        self._model = model
        self._n_ctx = n_ctx
        self._keep_alive = keep_alive
        self._client = _client(host, timeout)

    def load(self) -> None:
        """Ask Ollama to load the model now (an empty prompt loads without generating)."""
        try:
            self._client.generate(model=self._model, prompt="", keep_alive=self._keep_alive,
                                  options={"num_ctx": self._n_ctx})
        except Exception as exc:
            raise ModelUnavailable(
                f"Ollama at {self.host} could not load {self._model}: {_reason(exc)}"
            ) from exc

    def _generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        cancel: CancelToken | None,
    ) -> Iterator[str]:
        parts = self._client.chat(
            model=self._model,
            messages=[m.as_dict() for m in messages],
            stream=True,
            keep_alive=self._keep_alive,
            options={"num_predict": max_tokens, "temperature": temperature,
                     "num_ctx": self._n_ctx},
        )
        try:
            for part in parts:
                yield part.message.content or ""
        finally:
            parts.close()  # closes the HTTP stream; Ollama stops generating

    def _failure(self, exc: BaseException) -> ModelError:
        return ModelUnavailable(
            f"Ollama model {self._model} at {self.host} failed: {_reason(exc)}"
        )

    def close(self) -> None:
        # keep_alive=0 asks Ollama to unload the model now; an unreachable server holds
        # nothing of ours, so failing to reach it is fine.
        with contextlib.suppress(Exception):
            self._client.generate(model=self._model, prompt="", keep_alive=0)
        with contextlib.suppress(Exception):
            self._client.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
