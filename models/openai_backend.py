"""Models served by any OpenAI-compatible server (llama-server, vLLM, LM Studio, …).

For users whose heavy tiers run on another machine: SARAi streams `/v1/chat/completions`
over server-sent events and holds none of the model's memory itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import httpx

from sarai.models.backend import CancelToken, Message, StreamingBackend
from sarai.models.errors import ModelError, ModelUnavailable


def _base(host: str) -> str:
    """Accept both `http://h:8000` and `http://h:8000/v1`."""
    host = host.rstrip("/")
    return host if host.endswith("/v1") else host + "/v1"


def _headers(api_key_env: str | None) -> dict[str, str]:
    key = os.environ.get(api_key_env) if api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def openai_models(host: str, *, api_key_env: str | None = None,
                  timeout: float = 2.0) -> list[str]:
    """The model ids the server offers; ModelUnavailable with the reason if it does not answer."""
    try:
        r = httpx.get(f"{_base(host)}/models", headers=_headers(api_key_env), timeout=timeout)
        r.raise_for_status()
        return [m["id"] for m in r.json().get("data", [])]
    except httpx.HTTPStatusError as exc:
        raise ModelUnavailable(
            f"OpenAI-compatible server at {host} answered {exc.response.status_code}"
        ) from exc
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(
            f"OpenAI-compatible server at {host} is not reachable ({type(exc).__name__})"
        ) from exc


def openai_has_model(host: str, model: str, *, api_key_env: str | None = None,
                     timeout: float = 2.0) -> tuple[bool, str]:
    """Whether the server at `host` answers and offers `model`; the second item says why not."""
    try:
        ids = openai_models(host, api_key_env=api_key_env, timeout=timeout)
    except ModelUnavailable as exc:
        return False, str(exc)
    if model in ids:
        return True, ""
    return False, f"the server at {host} does not offer '{model}' (it has: {', '.join(ids)})"


class OpenAIBackend(StreamingBackend):
    """Streams chat replies from an OpenAI-compatible `/v1/chat/completions` endpoint."""

    failures = (httpx.HTTPError,)

    def __init__(self, host: str, model: str, *, api_key_env: str | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 120.0) -> None:
        super().__init__(model)
        self._host = host
        self._model = model
        self._client = httpx.Client(
            base_url=_base(host),
            headers=_headers(api_key_env),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )

    def _generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        cancel: CancelToken | None,
    ) -> Iterator[str]:
        body = {
            "model": self._model,
            "messages": [m.as_dict() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        # Leaving the block (at the end, on cancel or when closed) closes the connection,
        # and the server stops generating.
        with self._client.stream("POST", "/chat/completions", json=body) as r:
            if r.status_code >= 400:
                r.read()
                raise ModelUnavailable(
                    f"{self._model} at {self._host} answered {r.status_code}: "
                    f"{r.text[:200].strip()}"
                )
            for line in r.iter_lines():
                text = _delta(line)
                if text is None:
                    break
                yield text

    def _failure(self, exc: BaseException) -> ModelError:
        return ModelUnavailable(
            f"{self._model} at {self._host} failed: {type(exc).__name__}: {exc}"
        )

    def close(self) -> None:
        self._client.close()


def _delta(line: str) -> str | None:
    """The text in one server-sent event line; "" for keep-alives, None at `[DONE]`."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise ModelError(f"the server sent a malformed event: {data[:80]!r}") from exc
    if "error" in event:
        raise ModelUnavailable(f"the server reported: {event['error']}")
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""
