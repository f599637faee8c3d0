"""What SARAi remembers of the conversation: recent exchanges within a token budget."""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass
from difflib import SequenceMatcher

from sarai.models.backend import Message

# "Forget that" in English and Spanish; the whole utterance must be the request, so that
# "don't forget that milk" is still a question.
_FORGET = re.compile(
    r"^\W*(?:(?:please|por favor)\W+)?(?:sarai\W+)?"
    r"(?:forget (?:about )?(?:that|this|it|everything|all that)|"
    r"olvida(?:lo)?(?: (?:eso|esto|todo))?|olvídalo(?: todo)?)\W*(?:(?:please|por favor)\W*)?$",
    re.IGNORECASE,
)


# Whisper often mishears the short last word of a two-word command ("forget that" →
# "forget out", "forget about"), so a short utterance close enough to one of these counts too.
_FORGET_PHRASES = ("forget that", "forget it", "forget this", "olvida eso", "olvida esto")
_CUT_SHORT = "forget about"  # "forget about [it]" with its last word lost
_POLITE = {"please", "por", "favor", "sarai"}


def is_forget_request(text: str) -> bool:
    if _FORGET.match(text.strip()):
        return True
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in _POLITE]
    if not 1 < len(words) <= 3:
        return False
    said = " ".join(words)
    if said == _CUT_SHORT:
        return True
    return any(SequenceMatcher(None, said, p).ratio() >= 0.8 for p in _FORGET_PHRASES)


def estimate_tokens(text: str) -> int:
    """About four characters a token for English and Spanish; no tokenizer on the hot path."""
    return len(text) // 4 + 1


@dataclass(frozen=True)
class Exchange:
    user: Message
    assistant: Message
    interrupted: bool = False

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.user.content) + estimate_tokens(self.assistant.content)


class Conversation:
    """Recent exchanges: once `max_turns` or `max_tokens` is exceeded, the oldest go until
    half of each is left (the newest exchange always stays).

    Safe to use from several threads (the turn runner reads it, the control socket may
    clear it)."""

    def __init__(self, max_turns: int, max_tokens: int) -> None:
        self._max_turns = max_turns
        self._max_tokens = max_tokens
        self._items: deque[Exchange] = deque()
        self._lock = threading.Lock()

    def add(self, user: str, reply: str, *, interrupted: bool = False) -> None:
        if self._max_turns == 0 or not reply:
            return
        # An interrupted reply is kept as far as it got, and marked, so the model knows the
        # user cut it short.
        text = reply + (" […]" if interrupted else "")
        with self._lock:
            self._items.append(Exchange(Message("user", user), Message("assistant", text),
                                        interrupted))
            if self._over(self._max_turns, self._max_tokens):
                # Down to half the limits at once: every drop changes the start of the next
                # prompt, which the models then read again from the system prompt on (after
                # every turn, were one exchange dropped at a time).
                while self._over(max(1, self._max_turns // 2), self._max_tokens // 2):
                    self._items.popleft()

    def _over(self, turns: int, tokens: int) -> bool:
        n = len(self._items)
        return n > turns or (n > 1 and sum(e.tokens for e in self._items) > tokens)

    @property
    def tokens(self) -> int:
        with self._lock:
            return sum(e.tokens for e in self._items)

    def messages(self) -> list[Message]:
        with self._lock:
            items = list(self._items)
        out: list[Message] = []
        for e in items:
            out += [e.user, e.assistant]
        return out

    def messages_after(self, user: str, reply: str, *, interrupted: bool = False) -> list[Message]:
        """The messages as they will be once this exchange is added; nothing changes now."""
        trial = Conversation(self._max_turns, self._max_tokens)
        with self._lock:
            trial._items = deque(self._items)
        trial.add(user, reply, interrupted=interrupted)
        return trial.messages()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
