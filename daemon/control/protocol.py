"""The control API's messages: one JSON object per line each way.

A request names its command in `cmd` and may carry an `id`, which the reply echoes:

    {"cmd": "mode", "mode": "wake", "id": 7}
    {"ok": true, "id": 7, "mode": "wake"}
    {"ok": false, "id": 7, "code": "bad_request", "error": "mode: Input should be ..."}

After `subscribe` the connection carries events ({"event": "state", ...}) until it closes.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from sarai.daemon.control.wire import encode
from sarai.daemon.events import ListenMode
from sarai.models.settings import Tier

# Requests nest at most three levels ({"attachments": [{…}]}); a little room above that, and
# far below what makes the JSON parser recurse into a RecursionError.
MAX_DEPTH = 8


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"  # the line is not JSON
    BAD_REQUEST = "bad_request"  # JSON, but not a valid request
    UNKNOWN_COMMAND = "unknown_command"
    TOO_LONG = "too_long"  # the line exceeds the size cap
    FORBIDDEN = "forbidden"  # the peer is another user
    FAILED = "failed"  # a valid request that could not be carried out
    STOPPING = "stopping"  # the daemon is shutting down
    BUSY = "busy"  # too many connections; nothing was read, so the client may retry
    TIMEOUT = "timeout"  # a request line was not finished in time


class ProtocolError(Exception):
    """A request that cannot be parsed; str() is the sentence sent back."""

    def __init__(self, code: ErrorCode, message: str, request_id: int | str | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class _Request(BaseModel):
    # Strict: "yes" is not a boolean and "5" is not a number; a request means what it says.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: int | str | None = None


class StatusRequest(_Request):
    cmd: Literal["status"] = "status"


class MuteRequest(_Request):
    cmd: Literal["mute"] = "mute"


class UnmuteRequest(_Request):
    cmd: Literal["unmute"] = "unmute"


class ModeRequest(_Request):
    cmd: Literal["mode"] = "mode"
    mode: ListenMode


class PushRequest(_Request):
    cmd: Literal["push"] = "push"
    action: Literal["start", "stop"]


class Attachment(BaseModel):
    """A file that goes with a question: a recording, a picture or a video, read by the
    daemon (it runs as the same user) and handed to the tier that answers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    path: str = Field(min_length=1)
    kind: Literal["audio", "image", "video"] | None = None  # None: told by the file itself


class AskRequest(_Request):
    cmd: Literal["ask"] = "ask"
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    speak: bool = True
    language: str | None = None  # answer in this language (en, es, …)
    output: str | None = None  # write the spoken answer to this WAV file instead

    @model_validator(mode="after")
    def _something_to_ask(self) -> AskRequest:
        if not self.text.strip() and not self.attachments:
            raise ValueError("nothing to ask: give a text or an attachment")
        return self


class ModelsRequest(_Request):
    cmd: Literal["models"] = "models"
    action: Literal["ps", "load", "unload", "pin", "unpin"] = "ps"
    tier: Tier | None = None
    long_context: bool = Field(False, description="load: with the tier's n_ctx_long")
    force: bool = Field(False, description="unload: even a pinned model")

    @model_validator(mode="after")
    def _tier_needed(self) -> ModelsRequest:
        if self.action != "ps" and self.tier is None:
            raise ValueError(f"'{self.action}' needs a tier ({', '.join(t.value for t in Tier)})")
        return self


class HistoryRequest(_Request):
    cmd: Literal["history"] = "history"
    limit: int = Field(20, ge=1, le=10_000)


class ForgetRequest(_Request):
    cmd: Literal["forget"] = "forget"
    log: bool = Field(False, description="also delete the turn log on disk")


class QuitRequest(_Request):
    cmd: Literal["quit"] = "quit"


class InterruptRequest(_Request):
    """Stop the answer being spoken (as talking over it does)."""

    cmd: Literal["interrupt"] = "interrupt"


class SubscribeRequest(_Request):
    cmd: Literal["subscribe"] = "subscribe"


Request = Annotated[
    StatusRequest | MuteRequest | UnmuteRequest | ModeRequest | PushRequest | AskRequest
    | ModelsRequest | HistoryRequest | ForgetRequest | QuitRequest | InterruptRequest
    | SubscribeRequest,
    Field(discriminator="cmd"),
]
_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)
COMMANDS = ("status", "mute", "unmute", "mode", "push", "ask", "models", "history", "forget",
            "quit", "interrupt", "subscribe")


def parse_request(line: bytes | str) -> Request:
    """One request line → a typed request; ProtocolError with a plain sentence otherwise."""
    raw = line.encode() if isinstance(line, str) else line
    if nesting_depth(raw, MAX_DEPTH) > MAX_DEPTH:
        raise ProtocolError(ErrorCode.BAD_REQUEST,
                            f"request nested deeper than {MAX_DEPTH} levels; nothing was done")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also over-long integers, bad UTF-8
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a request must be a JSON object")
    rid = data.get("id")
    rid = rid if isinstance(rid, int | str) and not isinstance(rid, bool) else None
    cmd = data.get("cmd")
    if cmd is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a request needs a 'cmd'", rid)
    if cmd not in COMMANDS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_COMMAND,
            f"unknown command {str(cmd)[:40]!r} (known: {', '.join(COMMANDS)})", rid,
        )
    try:
        # Validated from the JSON text, where strict mode still takes "wake" for an enum and
        # an array for a tuple, but no string for a boolean or a number.
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, _first_error(exc), rid) from exc


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(raw: bytes, stop_at: int | None = None) -> int:
    """How deeply a JSON text nests arrays and objects, found without parsing it (brackets
    inside strings do not count); counting stops once it passes `stop_at`."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for b in brackets:
        depth += 1 if b in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if stop_at is not None and deepest > stop_at:
                break
    return deepest


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"][1:]]  # the first element is the union tag
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def request_line(req: _Request) -> bytes:
    return encode(req.model_dump(mode="json", exclude_none=True))


def ok_reply(request_id: int | str | None = None, **data: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True}
    if request_id is not None:
        reply["id"] = request_id
    reply.update(data)
    return reply


def error_reply(code: ErrorCode, message: str, request_id: int | str | None = None
                ) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": False, "code": code.value, "error": message}
    if request_id is not None:
        reply["id"] = request_id
    return reply
