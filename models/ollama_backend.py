"""Models served by an Ollama server, through the official `ollama` client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from models.backend import CancelToken, Message
from models.errors import ModelError, ModelUnavailable

DEFAULT_HOST = "http://127.0.0.1:11434"


def _client(host: str, timeout: float | None):
    import ollama

    return ollama.Client(host=host, timeout=timeout)


def ollama_has_model(host: str, model: str, timeout: float = 1.0) -> tuple[bool, str]:
    """Whether the server at `host` answers and knows `model`; the second item says why not."""
    try:
        listing = _client(host, timeout).list()
    except Exception as exc:  # httpx.ConnectError, timeouts, bad URLs
        return False, f"Ollama at {host} is not reachable ({type(exc).__name__})"
    names = {m.model for m in listing.models}
    wanted = {model, f"{model}:latest"}
    if names & wanted:
        return True, ""
    return False, f"Ollama at {host} has no model '{model}'"


class OllamaBackend:
    """Streams chat replies from Ollama; residency maps to Ollama's own `keep_alive`."""

    def __init__(self, host: str, model: str, *, n_ctx: int, keep_alive: float | str) -> None:
        self.name = model
        self._host = host
        self._model = model
        self._n_ctx = n_ctx
        self._keep_alive = keep_alive
        self._client = _client(host, None)

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        try:
            parts = self._client.chat(
                model=self._model,
                messages=[m.as_dict() for m in messages],
                stream=True,
                keep_alive=self._keep_alive,
                options={"num_predict": max_tokens, "temperature": temperature,
                         "num_ctx": self._n_ctx},
            )
            for part in parts:
                if cancel is not None and cancel.cancelled:
                    parts.close()  # closes the HTTP stream; Ollama stops generating
                    return
                text = part.message.content
                if text:
                    yield text
        except ModelError:
            raise
        except Exception as exc:
            raise ModelUnavailable(
                f"Ollama model {self._model} at {self._host} failed: {exc}"
            ) from exc

    def close(self) -> None:
        # keep_alive=0 asks Ollama to unload the model now; an unreachable server holds
        # nothing of ours, so failing to reach it is fine.
        with contextlib.suppress(Exception):
            self._client.generate(model=self._model, prompt="", keep_alive=0)
