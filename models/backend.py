"""The one contract every model backend honours: messages in, text chunks out, cancellable."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


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
