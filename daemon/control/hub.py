"""Fan-out of daemon events to whoever listens: the control API, sd_notify, the turn log."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

from sarai.daemon.events import Event

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


class EventHub:
    """Thread-safe publish/subscribe. Listeners must return quickly (queue, don't block)."""

    def __init__(self) -> None:
        self._listeners: dict[int, Listener] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        with self._lock:
            key = next(self._ids)
            self._listeners[key] = listener

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one broken listener must not silence the others
                log.exception("event listener failed on %s", event.kind)
