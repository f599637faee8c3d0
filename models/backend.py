"""The one contract every model backend honours: messages in, text chunks out, cancellable.

`StreamingBackend` is the base every backend is built on. It does what they all need around
their own generation: one reply at a time per model (a llama.cpp context, a transformers model
or one HTTP session must never serve two replies at once), stopping when the `CancelToken` is
set, closing the backend's own generator however the caller leaves (finished, cancelled,
closed half-way or dropped), and turning the backend's failures into `ModelError`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sarai.models.errors import ModelError


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class CancelToken:
    """Set from any thread to stop a reply that is being generated."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class ChatBackend(Protocol):
    """A loaded model that can answer a conversation."""

    name: str

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text chunks; stops early when `cancel` is set."""

    def close(self) -> None:
        """Release the model's memory."""


class TurnLock:
    """One reply at a time. A plain lock underneath, so the thread that finalises an
    abandoned reply (the garbage collector's) may release what another thread took."""

    _POLL_S = 0.05  # how soon a waiting reply notices that it was cancelled

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def acquire(self, cancel: CancelToken | None, name: str) -> bool:
        """Wait for the model; False if `cancel` was set while waiting."""
        me = threading.get_ident()
        while not self._lock.acquire(timeout=self._POLL_S):
            if self._owner == me:
                # Waiting would never end: this thread holds an unfinished reply.
                raise ModelError(f"{name} is still generating an unfinished reply in this "
                                 "thread; finish or close it first")
            if cancel is not None and cancel.cancelled:
                return False
        self._owner = me
        return True

    def release(self) -> None:
        self._owner = None
        self._lock.release()

    @property
    def busy(self) -> bool:
        return self._lock.locked()


class StreamingBackend:
    """Base of every backend: subclasses write `_generate`; callers use `stream`.

    `_generate` yields text and may check `cancel` itself where it can stop sooner (between
    decode steps, say); it must release what it holds in a `finally`, since it is closed as
    soon as the reply ends, early or not. Exceptions listed in `failures` become ModelError
    (through `_failure`); a ModelError passes through as it is.
    """

    failures: tuple[type[BaseException], ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name
        self._turn = TurnLock()

    @property
    def busy(self) -> bool:
        """Whether a reply is being generated now."""
        return self._turn.busy

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text chunks; stops early when `cancel` is set. A second reply
        from the same model waits until this one's generator is finished or closed."""
        if not self._turn.acquire(cancel, self.name):
            return
        try:
            if cancel is not None and cancel.cancelled:
                return
            chunks = self._generate(messages, max_tokens=max_tokens,
                                    temperature=temperature, cancel=cancel)
            try:
                for text in chunks:
                    if cancel is not None and cancel.cancelled:
                        return
                    if text:
                        yield text
            except ModelError:
                raise
            except self.failures as exc:
                raise self._failure(exc) from exc
            finally:
                # Stops the backend's own work (a decode loop, an HTTP stream) at once.
                chunks.close()
        finally:
            self._turn.release()

    def _generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        cancel: CancelToken | None,
    ) -> Iterator[str]:
        raise NotImplementedError

    def _failure(self, exc: BaseException) -> ModelError:
        """The ModelError for one of `failures`; one sentence naming the model."""
        return ModelError(f"{self.name}: {exc}")

    def close(self) -> None:
        """Release the model's memory."""
