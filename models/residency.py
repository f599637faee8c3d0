"""One RAM budget for everything SARAi keeps resident, and the rules for loading and unloading.

The manager does not know how a model is loaded: callers hand it a loader and a closer. It
decides whether the load fits (evicting idle, unpinned residents, least recently used first),
refuses with a reason when it cannot, loads each key once however many threads ask, measures
what the load really added to this process, and unloads `ttl` residents after their idle time
on a timer thread. A resident may belong to another (a projector to its text model): it is
unloaded first whenever that one goes. Listeners hear every change.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sarai.models import memory
from sarai.models.errors import ModelError, ModelUnavailable
from sarai.models.resident import (
    Admission,
    Cost,
    EventKind,
    Listener,
    ResidencyEvent,
    ResidentInfo,
    ResidentKind,
    ResidentState,
)
from sarai.models.settings import Residency, ResidencySettings, Tier

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    key: str
    name: str
    kind: ResidentKind
    tiers: set[Tier]
    policy: Residency
    ttl_s: float | None
    cost: Cost
    closer: Callable[[Any], None] | None
    external: bool
    detail: str
    state: ResidentState = ResidentState.LOADING
    obj: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    pinned_override: bool | None = None
    order: int = 0  # load order: the first of two sharing mmap'd weights pays for them
    loaded_at: float | None = None
    last_used: float = 0.0
    users: int = 0
    measured: memory.MemorySample | None = None
    parent: str | None = None  # a resident this one needs (a projector's text model)

    @property
    def pinned(self) -> bool:
        if self.pinned_override is not None:
            return self.pinned_override
        return self.policy is Residency.PINNED


class ResidencyManager:
    """Keeps residents within one RAM budget. Thread-safe; one per process."""

    def __init__(
        self,
        settings: ResidencySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        meter: Callable[[], memory.MemorySample] = memory.sample,
        available: Callable[[], float | None] = memory.available_mb,
    ) -> None:
        self._s = settings
        self._clock = clock
        self._meter = meter
        self._available = available
        self._entries: dict[str, _Entry] = {}
        self._cond = threading.Condition()
        # Loads and unloads run one at a time, so the RSS change around each is its own.
        # Reentrant: a closer may unload what belongs to the resident it closes.
        self._io = threading.RLock()
        self._listeners: list[Listener] = []
        self._order = 0
        self._closed = False
        self._timer = threading.Thread(target=self._expire_loop, name="sarai-ttl", daemon=True)
        self._timer.start()

    @property
    def settings(self) -> ResidencySettings:
        return self._s

    @property
    def budget_mb(self) -> float:
        return self._s.budget_mb

    # --- listeners -----------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change (from the thread that made it); returns unsubscribe."""
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, kind: EventKind, e: _Entry, reason: str = "") -> None:
        with self._cond:
            listeners = list(self._listeners)
            info = self._info(e) if e.key in self._entries else None
        event = ResidencyEvent(kind, e.key, e.name, tuple(sorted(e.tiers)), reason, info)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not break loading
                log.exception("residency listener failed on %s", kind)

    # --- accounting ----------------------------------------------------------------------

    def _charges(self, entries: list[_Entry]) -> dict[str, float]:
        """What each entry counts against the budget, with shared mmap'd weights paid once."""
        paid: set[str] = set()
        out: dict[str, float] = {}
        for e in sorted(entries, key=lambda x: x.order):
            weights = e.cost.weights_mb
            if e.cost.weights_file is not None:
                if e.cost.weights_file in paid:
                    weights = 0.0
                paid.add(e.cost.weights_file)
            expected = weights + e.cost.extra_mb
            measured = e.measured.total_mb if e.measured is not None else 0.0
            out[e.key] = max(expected, measured) if not e.external else expected
        return out

    def used_mb(self) -> float:
        with self._cond:
            return sum(self._charges(list(self._entries.values())).values())

    def _plan(self, key: str, cost: Cost, external: bool = False,
              parent: str | None = None) -> tuple[Admission, list[_Entry]]:
        """Under the lock: can `cost` be admitted, and which residents must go first (never
        its `parent`, which it needs)."""
        budget = self._s.budget_mb
        entries = list(self._entries.values())
        probe = _Entry(key, key, ResidentKind.LLM, set(), Residency.ON_DEMAND, None, cost,
                       None, external, "", order=self._order + 1)
        charges = self._charges([*entries, probe])
        need = charges[key]
        free = budget - sum(v for k, v in charges.items() if k != key)
        if need > budget:
            return Admission(False, f"needs about {need / 1024:.1f} GB, more than the whole "
                             f"RAM budget of {budget / 1024:.1f} GB", need, free), []
        victims: list[_Entry] = []
        idle = sorted(
            (e for e in entries
             if e.state is ResidentState.RESIDENT and not e.pinned and e.users == 0
             and e.key != parent),
            key=lambda e: e.last_used,
        )
        remaining = list(entries)
        gone: list[_Entry] = []  # the victims and what belongs to them
        while need > free and idle:
            victim = idle.pop(0)
            victims.append(victim)
            for g in (victim, *self._dependents(victim, remaining)):
                remaining.remove(g)
                gone.append(g)
                if g in idle:
                    idle.remove(g)
            charges = self._charges([*remaining, probe])
            need = charges[key]
            free = budget - sum(mb for k, mb in charges.items() if k != key)
        if need > free:
            held = sorted(
                ((e, charges.get(e.key, 0.0)) for e in remaining), key=lambda x: -x[1]
            )
            who = ", ".join(
                f"{_label(e)} {mb / 1024:.1f} GB ({'pinned' if e.pinned else e.state})"
                for e, mb in held[:4]
            )
            return Admission(
                False,
                f"needs about {need / 1024:.1f} GB but only {max(free, 0) / 1024:.1f} GB of the "
                f"{budget / 1024:.1f} GB RAM budget is free, held by models that cannot be "
                f"unloaded now: {who}", need, free,
            ), []
        if self._s.check_available and not external:
            # mmap'd weights live in the page cache, which the kernel can drop and reread;
            # what must fit in free RAM is the anonymous part.
            private = cost.extra_mb if cost.weights_file else need
            avail = self._available()
            freed = sum(self._charges(entries).get(x.key, 0.0) for x in gone)
            if avail is not None and private > avail + freed:
                return Admission(False, f"needs about {need / 1024:.1f} GB but this machine has "
                                 f"only {avail / 1024:.1f} GB of RAM available", need, free), []
        return Admission(True, "fits", need, free, tuple(v.key for v in victims)), victims

    def admission(self, key: str, cost: Cost, *, external: bool = False,
                  parent: str | None = None) -> Admission:
        """Would a resident with this key and cost be admitted now (evicting what it names)?
        A resident that would belong to `parent` never evicts it."""
        with self._cond:
            e = self._entries.get(key)
            if e is not None and e.state is not ResidentState.UNLOADING:
                return Admission(True, f"already {e.state}", 0.0, 0.0, resident=True)
            return self._plan(key, cost, external, parent)[0]

    # --- loading -------------------------------------------------------------------------

    def acquire(
        self,
        key: str,
        loader: Callable[[], Any],
        *,
        name: str,
        cost: Cost | Callable[[], Cost],
        tier: Tier | None = None,
        kind: ResidentKind = ResidentKind.LLM,
        policy: Residency = Residency.ON_DEMAND,
        ttl_s: float | None = None,
        closer: Callable[[Any], None] | None = None,
        external: bool = False,
        detail: str = "",
        use: bool = False,
        parent: str | None = None,
    ) -> Any:
        """The object for `key`, loading it with `loader` if it is not resident.

        `cost` may be a function, called only when a load is needed. Concurrent callers for
        one key share one load. With `use`, the resident is marked busy
        (never evicted or expired) until `release(key)`. With `parent`, the resident belongs
        to that one (which must be resident): it is unloaded before its parent, whenever the
        parent goes. Raises ModelUnavailable when the budget cannot make room, and whatever
        the loader raised (as ModelError) if it fails.
        """
        while True:
            with self._cond:
                e = self._entries.get(key)
                if e is not None and e.state is ResidentState.UNLOADING:
                    self._cond.wait()
                    continue
                if e is not None:
                    self._join(e, tier, policy, ttl_s)
                    if e.state is ResidentState.RESIDENT:
                        e.last_used = self._clock()
                        if use:
                            e.users += 1
                        return e.obj
            if e is not None:  # another thread is loading it: share that load
                e.done.wait()
                if e.error is not None:
                    raise _as_model_error(e.error, e)
                continue  # resident now (or already unloaded again): look once more
            if callable(cost):
                cost = cost()
            e, victims = self._reserve(key, name, kind, cost, tier, policy, ttl_s, closer,
                                       external, detail, parent)
            if e is None:
                continue  # someone else started loading it in between
            self._start(e, victims)
            try:
                with self._io:
                    before = self._meter()
                    obj = loader()
                    after = self._meter()
            except BaseException as exc:
                self._fail(e, exc)
                raise _as_model_error(exc, e) from exc
            self._finish(e, obj, None if external else after.minus(before), use)
            return obj

    def _join(self, e: _Entry, tier: Tier | None, policy: Residency, ttl_s: float | None) -> None:
        """A second tier served by the same resident: keep it as long as the stricter one asks."""
        if tier is None or tier in e.tiers:
            return
        e.tiers.add(tier)
        rank = {Residency.TTL: 0, Residency.ON_DEMAND: 1, Residency.PINNED: 2}
        if rank[policy] > rank[e.policy]:
            e.policy = policy
        if e.policy is Residency.TTL and ttl_s is not None:
            e.ttl_s = max(e.ttl_s or 0.0, ttl_s)

    def _reserve(self, key: str, name: str, kind: ResidentKind, cost: Cost, tier: Tier | None,
                 policy: Residency, ttl_s: float | None, closer: Callable[[Any], None] | None,
                 external: bool, detail: str,
                 parent: str | None = None) -> tuple[Any, list[_Entry]]:
        """Admit a new resident as `loading` (its cost is reserved) or raise ModelUnavailable."""
        with self._cond:
            if self._closed:
                raise ModelUnavailable("the model manager is shut down")
            if key in self._entries:
                return None, []
            e = _Entry(key, name, kind, {tier} if tier else set(), policy, ttl_s, cost, closer,
                       external, detail, parent=parent)
            owner = self._entries.get(parent) if parent is not None else None
            if parent is not None and (owner is None
                                       or owner.state is not ResidentState.RESIDENT):
                raise ModelUnavailable(f"cannot load {_label(e)}: {parent} is not resident")
            adm, victims = self._plan(key, cost, external, parent)
            if adm.ok:
                self._order += 1
                e.order = self._order
                for v in victims:
                    v.state = ResidentState.UNLOADING
                self._entries[key] = e
                return e, victims
        reason = f"cannot load {_label(e)}: {adm.reason}"
        self._emit(EventKind.REFUSED, e, reason)
        raise ModelUnavailable(reason)

    def _start(self, e: _Entry, victims: list[_Entry]) -> None:
        for v in victims:
            self._unload_entry(v, f"evicted to make room for {_label(e)}")
        self._emit(EventKind.LOADING, e)

    def _fail(self, e: _Entry, exc: BaseException) -> None:
        with self._cond:
            e.error = exc
            if self._entries.get(e.key) is e:
                del self._entries[e.key]
            self._cond.notify_all()
        e.done.set()
        self._emit(EventKind.FAILED, e, str(exc))

    def _finish(self, e: _Entry, obj: Any, measured: memory.MemorySample | None,
                use: bool) -> None:
        with self._cond:
            e.obj = obj
            e.measured = measured
            e.state = ResidentState.RESIDENT
            e.loaded_at = time.time()
            e.last_used = self._clock()
            if use:
                e.users += 1
            self._cond.notify_all()
        e.done.set()
        if measured is not None and measured.total_mb > e.cost.total_mb * 1.25 + 16:
            log.warning("%s took %.0f MB, more than the %.0f MB estimated", e.name,
                        measured.total_mb, e.cost.total_mb)
        self._emit(EventKind.LOADED, e)

    def release(self, key: str) -> None:
        """The end of a `use=True` acquire: the resident is idle again from now."""
        with self._cond:
            e = self._entries.get(key)
            if e is not None and e.users > 0:
                e.users -= 1
                e.last_used = self._clock()
                self._cond.notify_all()

    @contextlib.contextmanager
    def in_use(self, key: str, loader: Callable[[], Any], **kw: Any) -> Iterator[Any]:
        """`acquire(..., use=True)` and `release` around a block."""
        obj = self.acquire(key, loader, use=True, **kw)
        try:
            yield obj
        finally:
            self.release(key)

    @contextlib.contextmanager
    def borrow(self, key: str) -> Iterator[Any | None]:
        """The object for `key` if it is resident (else None; nothing is loaded), kept from
        being unloaded during the block without counting as a use: its idle time runs on, so
        background work on it (priming) never keeps an idle model resident."""
        with self._cond:
            e = self._entries.get(key)
            if e is None or e.state is not ResidentState.RESIDENT:
                e = None
            else:
                e.users += 1
        try:
            yield None if e is None else e.obj
        finally:
            if e is not None:
                with self._cond:
                    e.users -= 1
                    self._cond.notify_all()  # the idle timer may be due already

    # --- residents that other parts load (ASR, TTS) --------------------------------------

    @contextlib.contextmanager
    def track(self, key: str, name: str, kind: ResidentKind, *, estimate_mb: float = 0.0,
              closer: Callable[[Any], None] | None = None) -> Iterator[None]:
        """Measure what the block loads and keep it on the books as a pinned resident.

        For the ASR model and the TTS voice, which other parts load themselves:
        `with manager.track("asr:whisper-tiny-en", "Whisper tiny.en", ResidentKind.ASR): ...`
        Refused (ModelUnavailable) like any load when `estimate_mb` cannot fit.
        """
        e, victims = self._reserve(key, name, kind, Cost(extra_mb=estimate_mb), None,
                                   Residency.PINNED, None, closer, False, "")
        self._start(e, victims)
        with self._io:
            before = self._meter()
            try:
                yield
            except BaseException as exc:
                self._fail(e, exc)
                raise
            after = self._meter()
        self._finish(e, None, after.minus(before), False)

    def register(self, key: str, name: str, kind: ResidentKind, size_mb: float, *,
                 closer: Callable[[Any], None] | None = None) -> ResidentInfo:
        """Put an already-loaded resident of known size on the books (pinned)."""
        e, victims = self._reserve(key, name, kind, Cost(extra_mb=size_mb), None,
                                   Residency.PINNED, None, closer, False, "")
        self._start(e, victims)
        self._finish(e, None, memory.MemorySample(size_mb, 0.0), False)
        return self._info_locked(e)

    # --- unloading -----------------------------------------------------------------------

    def unload(self, key: str, *, force: bool = False, reason: str = "unloaded on request",
               wait_s: float = 30.0, serves: Iterable[Tier] = ()) -> bool:
        """Unload `key`; False if it is not resident. A pinned resident stays unless `force`.
        `serves`: tiers the caller knows run on it (named in the errors, used or not yet).

        A reply in progress is never cut off (freeing a llama.cpp model under a running decode
        would crash): this waits up to `wait_s` for it to finish, then raises ModelError.
        """
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                e = self._entries.get(key)
                if e is None or e.state is ResidentState.UNLOADING:
                    return False
                if e.state is ResidentState.RESIDENT:
                    if not force and e.pinned:
                        raise ModelError(f"{_label(e, serves)} is pinned; unpin it first")
                    if e.users == 0:
                        break
                    if time.monotonic() >= deadline:
                        raise ModelError(f"{_label(e, serves)} is still answering; not "
                                         "unloaded")
                self._cond.wait(max(deadline - time.monotonic(), 0.01))
            e.state = ResidentState.UNLOADING
        self._unload_entry(e, reason)
        return True

    def _dependents(self, e: _Entry, among: list[_Entry] | None = None) -> list[_Entry]:
        """What belongs to `e` (and to those, in turn), deepest last."""
        pool = list(self._entries.values()) if among is None else among
        out = [d for d in pool if d.parent == e.key]
        for d in list(out):
            out.extend(x for x in self._dependents(d, pool) if x not in out)
        return out

    def _unload_entry(self, e: _Entry, reason: str) -> None:
        # What belongs to it goes first (a projector bound to the text model being freed).
        with self._cond:
            deps = [d for d in self._dependents(e) if d.state is ResidentState.RESIDENT]
            for d in deps:
                d.state = ResidentState.UNLOADING
        for d in reversed(deps):
            self._unload_entry(d, f"{reason}; it belongs to {e.name}")
        with self._io:
            try:
                if e.closer is not None and e.obj is not None:
                    e.closer(e.obj)
            except Exception:  # the memory is what matters; a failing close is logged
                log.exception("closing %s failed", e.name)
            finally:
                e.obj = None
                memory.release_freed()
        with self._cond:
            if self._entries.get(e.key) is e:
                del self._entries[e.key]
            self._cond.notify_all()
        log.info("unloaded %s: %s", e.name, reason)
        self._emit(EventKind.UNLOADED, e, reason)

    def set_pinned(self, key: str, pinned: bool | None) -> ResidentInfo:
        """Pin (True), unpin (False) or go back to the configured policy (None)."""
        with self._cond:
            e = self._entries.get(key)
            if e is None:
                raise ModelError(f"{key} is not resident")
            e.pinned_override = pinned
            e.last_used = self._clock()
            self._cond.notify_all()
            info = self._info(e)
        self._emit(EventKind.POLICY, e, "pinned" if e.pinned else "unpinned")
        return info

    # --- the TTL timer -------------------------------------------------------------------

    def _expiry(self, e: _Entry) -> float | None:
        if e.policy is not Residency.TTL or e.pinned or e.ttl_s is None:
            return None
        return e.last_used + e.ttl_s

    def _expire_loop(self) -> None:
        while True:
            due: list[_Entry] = []
            with self._cond:
                if self._closed:
                    return
                now = self._clock()
                nxt: float | None = None
                for e in self._entries.values():
                    t = self._expiry(e)
                    if t is None or e.state is not ResidentState.RESIDENT or e.users:
                        continue
                    if t <= now:
                        e.state = ResidentState.UNLOADING
                        due.append(e)
                    else:
                        nxt = t if nxt is None else min(nxt, t)
                if not due:
                    # Woken early by any change (a use, a load, close); 30 s caps clock drift.
                    self._cond.wait(timeout=30.0 if nxt is None else min(nxt - now, 30.0))
                    continue
            for e in due:
                self._unload_entry(e, f"idle for {e.ttl_s:g} s (ttl)")

    # --- views ---------------------------------------------------------------------------

    def _info(self, e: _Entry, charges: dict[str, float] | None = None) -> ResidentInfo:
        charges = charges or self._charges(list(self._entries.values()))
        now = self._clock()
        exp = self._expiry(e) if e.state is ResidentState.RESIDENT and not e.users else None
        return ResidentInfo(
            key=e.key, name=e.name, kind=e.kind, tiers=tuple(sorted(e.tiers)), state=e.state,
            policy=e.policy, pinned=e.pinned, estimate_mb=round(e.cost.total_mb, 1),
            charged_mb=round(charges.get(e.key, 0.0), 1),
            anon_mb=round(e.measured.anon_mb, 1) if e.measured else None,
            file_mb=round(e.measured.file_mb, 1) if e.measured else None,
            loaded_at=e.loaded_at,
            idle_s=round(now - e.last_used, 1) if e.state is ResidentState.RESIDENT else None,
            expires_in_s=round(max(exp - now, 0.0), 1) if exp is not None else None,
            in_use=e.users, external=e.external, detail=e.detail,
        )

    def snapshot(self) -> list[ResidentInfo]:
        """Every resident (and every load in progress), largest first."""
        with self._cond:
            entries = list(self._entries.values())
            charges = self._charges(entries)
            infos = [self._info(e, charges) for e in entries]
        return sorted(infos, key=lambda i: -i.charged_mb)

    def info(self, key: str) -> ResidentInfo | None:
        with self._cond:
            e = self._entries.get(key)
            return self._info(e) if e is not None else None

    def _info_locked(self, e: _Entry) -> ResidentInfo:
        with self._cond:
            return self._info(e)

    def state(self, key: str) -> ResidentState | None:
        with self._cond:
            e = self._entries.get(key)
            return e.state if e is not None else None

    def get(self, key: str) -> Any:
        """The loaded object for `key` if it is resident, without loading or touching it."""
        with self._cond:
            e = self._entries.get(key)
            return e.obj if e is not None and e.state is ResidentState.RESIDENT else None

    def close(self, wait_s: float = 10.0) -> None:
        """Unload everything and stop the timer, letting replies in progress finish first
        (for up to `wait_s`)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while any(e.users for e in self._entries.values()) and time.monotonic() < deadline:
                self._cond.wait(max(deadline - time.monotonic(), 0.01))
            entries = [e for e in self._entries.values() if e.state is ResidentState.RESIDENT]
            # What belongs to another resident goes before it.
            entries.sort(key=lambda e: e.parent is None)
            for e in entries:
                e.state = ResidentState.UNLOADING
        for e in entries:
            if e.users:
                log.warning("%s is still answering at shutdown; unloading it anyway", e.name)
            self._unload_entry(e, "shutting down")
        self._timer.join(timeout=5)


def _label(e: _Entry, serves: Iterable[Tier] = ()) -> str:
    tiers = ", ".join(sorted(e.tiers | set(serves)))
    return f"{e.name} ({tiers})" if tiers else e.name


def _as_model_error(exc: BaseException, e: _Entry) -> BaseException:
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, Exception):
        return ModelError(f"loading {_label(e)} failed: {exc}")
    return exc


__all__ = [
    "Admission", "Cost", "EventKind", "ResidencyEvent", "ResidencyManager", "ResidentInfo",
    "ResidentKind", "ResidentState",
]
