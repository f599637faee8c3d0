"""The control API's messages: every request round-trips, bad lines get a precise error."""

import json

import pytest

from sarai.daemon.control.protocol import (
    COMMANDS,
    AskRequest,
    Attachment,
    ErrorCode,
    ForgetRequest,
    HistoryRequest,
    InterruptRequest,
    ModelsRequest,
    ModeRequest,
    MuteRequest,
    ProtocolError,
    PushRequest,
    QuitRequest,
    StatusRequest,
    SubscribeRequest,
    UnmuteRequest,
    error_reply,
    ok_reply,
    parse_request,
    request_line,
)
from sarai.daemon.events import ListenMode
from sarai.models.settings import Tier

REQUESTS = [
    StatusRequest(id=1),
    MuteRequest(),
    UnmuteRequest(id="u"),
    ModeRequest(mode=ListenMode.WAKE),
    PushRequest(action="start"),
    AskRequest(text="hola", attachments=(Attachment(path="/tmp/a.png", kind="image"),),
               speak=False),
    AskRequest(text="hola", language="es", output="/tmp/a.wav"),
    InterruptRequest(id=3),
    ModelsRequest(action="pin", tier=Tier.OMNI_QUALITY),
    ModelsRequest(),
    HistoryRequest(limit=3),
    ForgetRequest(log=True),
    QuitRequest(),
    SubscribeRequest(id=9),
]


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: r.cmd)
def test_every_request_round_trips(req):
    line = request_line(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_request(line) == req


def test_every_command_has_a_request_type():
    assert {r.cmd for r in REQUESTS} == set(COMMANDS)


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        (b"{nope", ErrorCode.BAD_JSON, "not valid JSON"),
        (b"\xff\xfe{}", ErrorCode.BAD_JSON, "not valid JSON"),
        (b"[1, 2]", ErrorCode.BAD_REQUEST, "JSON object"),
        (b'{"id": 4}', ErrorCode.BAD_REQUEST, "needs a 'cmd'"),
        (b'{"cmd": "dance"}', ErrorCode.UNKNOWN_COMMAND, "unknown command 'dance'"),
        (b'{"cmd": 7}', ErrorCode.UNKNOWN_COMMAND, "unknown command"),
        (b'{"cmd": "mode", "mode": "loud"}', ErrorCode.BAD_REQUEST, "mode: Input should be"),
        (b'{"cmd": "mode"}', ErrorCode.BAD_REQUEST, "mode: Field required"),
        (b'{"cmd": "status", "volume": 3}', ErrorCode.BAD_REQUEST, "volume: unknown field"),
        (b'{"cmd": "push", "action": "hold"}', ErrorCode.BAD_REQUEST, "action:"),
        (b'{"cmd": "ask", "text": "  "}', ErrorCode.BAD_REQUEST, "nothing to ask"),
        (b'{"cmd": "models", "action": "load"}', ErrorCode.BAD_REQUEST, "'load' needs a tier"),
        (b'{"cmd": "models", "action": "load", "tier": "huge"}', ErrorCode.BAD_REQUEST, "tier:"),
        (b'{"cmd": "history", "limit": 0}', ErrorCode.BAD_REQUEST, "limit:"),
    ],
)
def test_bad_lines_get_one_clear_sentence(line, code, words):
    with pytest.raises(ProtocolError) as err:
        parse_request(line)
    assert err.value.code is code
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_the_request_id_survives_an_invalid_request():
    with pytest.raises(ProtocolError) as err:
        parse_request(b'{"cmd": "mode", "mode": "loud", "id": 42}')
    assert err.value.request_id == 42
    reply = error_reply(err.value.code, str(err.value), err.value.request_id)
    assert reply == {"ok": False, "code": "bad_request", "error": str(err.value), "id": 42}


def test_replies_are_json_objects_with_ok():
    assert ok_reply(3, mode="wake") == {"ok": True, "id": 3, "mode": "wake"}
    assert ok_reply() == {"ok": True}
    assert json.loads(json.dumps(error_reply(ErrorCode.TOO_LONG, "x")))["code"] == "too_long"
