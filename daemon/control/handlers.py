"""What each control command does to the running daemon; the reply data, or CommandFailed."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sarai.audio.errors import AudioError
from sarai.daemon.control.server import CommandFailed
from sarai.daemon.control.protocol import (
    AskRequest,
    ForgetRequest,
    HistoryRequest,
    ModelsRequest,
    ModeRequest,
    MuteRequest,
    PushRequest,
    QuitRequest,
    Request,
    StatusRequest,
    UnmuteRequest,
)
from sarai.daemon.events import ListenMode, State
from sarai.models.backend import CancelToken
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
            return _set_mode(d, d.unmuted_mode)
        case ModeRequest(mode=mode):
            return _set_mode(d, mode)
        case PushRequest(action=action):
            return _push(d, action == "start")
        case AskRequest():
            return _ask(d, req)
        case ModelsRequest():
            return _models(d, req)
        case HistoryRequest(limit=limit):
            return {"turns": list(d.history)[-limit:]}
        case ForgetRequest(log=delete_log):
            return _forget(d, delete_log)
        case QuitRequest():
            d.request_stop("quit requested over the control socket")
            return {"stopping": True, "pid": os.getpid()}
    raise CommandFailed(f"'{req.cmd}' is not handled here")


def _set_mode(d: Daemon, mode: ListenMode) -> dict[str, Any]:
    loop = d.loop
    if loop is not None:
        loop.set_mode(mode)  # announces the mode (and muted/listening) itself
    else:
        d.publish_mode(mode)  # applied when the loop (re)starts
    return {"mode": mode.value}


def _push(d: Daemon, active: bool) -> dict[str, Any]:
    if d.mode is not ListenMode.PUSH:
        raise CommandFailed(f"push-to-talk works in push mode; the mode is {d.mode} "
                            "(switch with 'sarai mode push')")
    loop = d.loop
    if loop is None:
        raise CommandFailed("the voice loop is not running right now")
    loop.push(active)
    return {"pushing": active}


def _ask(d: Daemon, req: AskRequest) -> dict[str, Any]:
    assistant = _ready(d)
    try:
        media = _load_media(req)
    except ModelError as exc:
        raise CommandFailed(str(exc)) from exc
    loop = d.loop
    try:
        if req.speak and loop is not None and not media:
            rec = loop.ask(req.text)  # spoken, interruptible, announced by the loop
        else:
            sink = loop.speaker if req.speak and loop is not None else None
            cancel = CancelToken()
            d.asks.add(cancel)
            try:
                with d.ask_lock:
                    if sink is not None:
                        d.publish_state(State.THINKING)
                    rec = assistant.text_turn(req.text, sink, cancel, media=media)
            finally:
                d.asks.discard(cancel)
            d.publish_turn(rec.as_dict())
            if sink is not None:
                d.publish_state(_resting(d))
    except (AudioError, ModelError) as exc:
        if loop is not None:
            d.publish_state(_resting(d))
        raise CommandFailed(str(exc)) from exc
    return {"turn": rec.as_dict()}


def _load_media(req: AskRequest) -> list:
    """The attachments, decoded the way `sarai ask --image/--audio/--video` decodes them."""
    if not req.attachments:
        return []
    from sarai.models.attachments import MediaKind, MediaLimits, load

    limits = MediaLimits()
    media = []
    for a in req.attachments:
        path = Path(a.path).expanduser()
        if not path.is_file():
            raise CommandFailed(f"attachment not found: {a.path}")
        media.extend(load(path, limits, expect=MediaKind(a.kind) if a.kind else None))
    return media


def _resting(d: Daemon) -> State:
    return State.MUTED if d.mode is ListenMode.MUTED else State.LISTENING


def _models(d: Daemon, req: ModelsRequest) -> dict[str, Any]:
    _ready(d)
    residency = d.residency
    assert residency is not None
    action, tier = req.action, req.tier
    if action == "ps" or tier is None:
        return residency.snapshot().as_dict()
    before = d.state
    try:
        if action == "load":
            d.publish_state(State.LOADING, f"loading {tier}")
            view = residency.load(tier, long_context=req.long_context)
        elif action == "unload":
            view = residency.unload(tier, force=req.force)
        else:
            view = residency.pin(tier, action == "pin")
    except ModelError as exc:
        raise CommandFailed(str(exc)) from exc
    finally:
        if action == "load":
            loop = d.loop
            d.publish_state(loop.state if loop is not None else before)
    return view.as_dict()


def _forget(d: Daemon, delete_log: bool) -> dict[str, Any]:
    assistant = _ready(d)
    assistant.forget()
    d.history.clear()
    deleted = False
    if delete_log and d.turn_log is not None:
        d.turn_log.clear()
        deleted = True
    return {"forgotten": True, "log_deleted": deleted}


def _ready(d: Daemon):
    if d.assistant is None:
        raise CommandFailed("SARAi is still starting; try again in a moment")
    return d.assistant
