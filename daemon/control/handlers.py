"""What each control command does to the running daemon; the reply data, or CommandFailed."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sarai.daemon.control.protocol import (
    AskRequest,
    ForgetRequest,
    HistoryRequest,
    InterruptRequest,
    ModelsRequest,
    ModeRequest,
    MuteRequest,
    PushRequest,
    QuitRequest,
    Request,
    StatusRequest,
    UnmuteRequest,
)
from sarai.daemon.control.server import CommandFailed
from sarai.daemon.conversation.core import ConversationCore
from sarai.daemon.conversation.requests import MediaRef, Origin, RequestError, typed
from sarai.daemon.events import ListenMode
from sarai.models.errors import ModelError

if TYPE_CHECKING:
    from sarai.daemon.service.supervisor import Daemon

log = logging.getLogger(__name__)


def dispatch(d: Daemon, req: Request) -> dict[str, Any]:
    match req:
        case StatusRequest():
            return d.status()
        case MuteRequest():
            return _set_mode(d, ListenMode.MUTED)
        case UnmuteRequest():
            return _set_mode(d, _core(d).unmuted_mode)
        case ModeRequest(mode=mode):
            return _set_mode(d, mode)
        case PushRequest(action=action):
            return _push(d, action == "start")
        case AskRequest():
            return _ask(d, req)
        case ModelsRequest():
            return _models(d, req)
        case HistoryRequest(limit=limit):
            return {"turns": [r.as_dict() for r in _core(d).history()][-limit:]}
        case ForgetRequest(log=delete_log):
            return _forget(d, delete_log)
        case InterruptRequest():
            _core(d).interrupt("asked over the control socket")
            return {"interrupted": True}
        case QuitRequest():
            d.request_stop("quit requested over the control socket")
            return {"stopping": True, "pid": os.getpid()}
    raise CommandFailed(f"'{req.cmd}' is not handled here")


def _core(d: Daemon) -> ConversationCore:
    if d.core is None:
        raise CommandFailed("SARAi is still starting; try again in a moment")
    return d.core


def _set_mode(d: Daemon, mode: ListenMode) -> dict[str, Any]:
    _core(d).set_mode(mode)  # announces the mode (and muted/listening) itself
    return {"mode": mode.value}


def _push(d: Daemon, active: bool) -> dict[str, Any]:
    core = _core(d)
    if core.mode is not ListenMode.PUSH:
        raise CommandFailed(f"push-to-talk works in push mode; the mode is {core.mode} "
                            "(switch with 'sarai mode push')")
    if d.loop is None:
        raise CommandFailed("the voice loop is not running right now")
    core.push(active)
    return {"pushing": active}


def _ask(d: Daemon, req: AskRequest) -> dict[str, Any]:
    core = _core(d)
    try:
        request = typed(req.text, media=tuple(MediaRef(Path(a.path).expanduser(), a.kind)
                                              for a in req.attachments),
                        language=req.language, speak=req.speak,
                        output=Path(req.output) if req.output else None, origin=Origin.SOCKET)
        rec = core.ask(request).result()
    except RequestError as exc:
        raise CommandFailed(str(exc)) from exc
    return {"turn": rec.as_dict()}


def _models(d: Daemon, req: ModelsRequest) -> dict[str, Any]:
    _ready(d)
    residency = d.residency
    assert residency is not None
    action, tier = req.action, req.tier
    if action == "ps" or tier is None:
        return residency.snapshot().as_dict()
    core = d.core
    try:
        if action == "load":
            if core is not None:
                core.loading(tier.value)
            view = residency.load(tier, long_context=req.long_context)
        elif action == "unload":
            view = residency.unload(tier, force=req.force)
        else:
            view = residency.pin(tier, action == "pin")
    except ModelError as exc:
        raise CommandFailed(str(exc)) from exc
    finally:
        if action == "load" and core is not None:
            core.loading(None)
    return view.as_dict()


def _forget(d: Daemon, delete_log: bool) -> dict[str, Any]:
    _core(d).forget().result(30)
    deleted = False
    if delete_log and d.turn_log is not None:
        d.turn_log.clear()
        deleted = True
    return {"forgotten": True, "log_deleted": deleted}


def _ready(d: Daemon):
    if d.assistant is None:
        raise CommandFailed("SARAi is still starting; try again in a moment")
    return d.assistant
