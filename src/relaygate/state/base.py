"""The ``SharedState`` seam (rate limits, budgets, replica events) and its in-process implementation.

One gateway process talks to one ``SharedState``: ``admit`` checks and records every limit of a
request atomically (all pass, or nothing is recorded), ``settle`` adds real tokens and cost
after the call, ``seed`` starts absent budget counters from the ledger's spend, ``publish`` tells
the other replicas of a breaker opening, a cooldown or a cutoff change. ``MemoryState`` is the
default (one replica) and the fallback of ``RedisState`` while Redis is unreachable. Times are
epoch seconds (wall clock: replicas compare them).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import orjson

from relaygate.state.windows import WINDOW_S, Check, request_window, token_window

__all__ = [
    "Ask",
    "Budget",
    "EventHandler",
    "Limit",
    "MemoryState",
    "Seed",
    "Settlement",
    "SharedState",
    "StateEvent",
    "StateHealth",
    "Verdict",
]


@dataclass(frozen=True, slots=True)
class Limit:
    """One rate limit: ``name`` is the state key without prefix, e.g. ``key:key_ab12:requests``."""

    name: str
    kind: Literal["requests", "tokens"]
    limit: int
    scope: Literal["key", "tenant"]


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget period: ``name`` e.g. ``budget:day:2026-11-29``; ``ends_at`` epoch seconds."""

    name: str
    limit_usd: float
    period: Literal["day", "month"]
    ends_at: float


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request needs admitted. ``group`` (the tenant) keeps all its keys together
    (one Redis Cluster hash slot); ``reserve_usd`` is added to every budget when admitted.
    ``seed_missing``: when a budget's counter is absent (never seeded, Redis restarted or
    flushed, a new period), record nothing and answer ``Verdict.unseeded`` so the caller can
    ``seed`` it from the ledger first; False: an absent counter starts at 0."""

    request_id: str
    group: str
    limits: tuple[Limit, ...]
    budgets: tuple[Budget, ...]
    reserve_usd: float
    seed_missing: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """``checks`` line up with ``ask.limits``, ``spent_usd`` with ``ask.budgets`` (reservation
    included when admitted). ``denied`` is the first limit or budget that refused.
    ``unseeded``: nothing was checked or recorded, a budget counter is absent (see ``Ask``)."""

    ok: bool
    checks: tuple[Check, ...]
    spent_usd: tuple[float, ...]
    denied: Limit | Budget | None = None
    retry_after_s: float = 0.0
    unseeded: bool = False


UNSEEDED = Verdict(False, (), (), unseeded=True)

Seed = tuple[str, Budget, float]
"""``(group, budget, usd)``: start ``budget``'s counter of ``group`` at ``usd`` if it is absent."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """After the call: ``tokens`` charged to each tokens limit, ``delta_usd`` (real cost minus
    the reservation, often negative) added to each budget."""

    group: str
    token_limits: tuple[Limit, ...]
    tokens: int
    budgets: tuple[Budget, ...]
    delta_usd: float


EventKind = Literal["breaker_open", "cooldown", "cutoffs", "resync"]


@dataclass(frozen=True, slots=True)
class StateEvent:
    """A replica event. ``subject``: deployment id; ``until``: epoch s the breaker or cooldown
    lasts; ``origin``: the publishing replica. ``resync`` is local only: shared state came
    (back) up, so the gateway re-publishes what it holds."""

    kind: EventKind
    subject: str = ""
    until: float = 0.0
    origin: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"kind": self.kind, "subject": self.subject, "until": self.until, "origin": self.origin}
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> StateEvent | None:
        """None for anything that is not a well-formed event (another program on the channel)."""
        try:
            d = orjson.loads(raw)
            kind = d["kind"]
            if kind not in ("breaker_open", "cooldown", "cutoffs"):
                return None
            return cls(kind, str(d.get("subject", "")), float(d.get("until", 0.0)), str(d.get("origin", "")))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None


@dataclass(frozen=True, slots=True)
class StateHealth:
    backend: str
    up: bool
    reason: str | None = None


EventHandler = Callable[[StateEvent], Awaitable[None]]


class SharedState(Protocol):
    """``shared``: whether other replicas see this state (False: nothing to publish)."""

    shared: bool

    async def start(self, on_event: EventHandler) -> None: ...
    async def close(self) -> None: ...
    async def admit(self, ask: Ask) -> Verdict: ...
    async def settle(self, s: Settlement) -> None: ...
    async def seed(self, items: Sequence[Seed]) -> None: ...
    async def publish(self, event: StateEvent) -> None: ...
    def health(self) -> StateHealth: ...


class MemoryState:
    """Limits and budgets of this process only; ``publish`` has no one to tell.

    ``clock`` is epoch seconds. Windows are pruned on use; a budget counter counts as absent
    once its period ended, and is dropped at the next ``seed``.
    """

    shared = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, dict[int, int]] = {}
        self._spent: dict[str, tuple[float, float]] = {}  # name -> (usd, ends_at)

    async def start(self, on_event: EventHandler) -> None:
        return None

    async def close(self) -> None:
        return None

    def health(self) -> StateHealth:
        return StateHealth("memory", True)

    async def publish(self, event: StateEvent) -> None:
        return None

    async def admit(self, ask: Ask) -> Verdict:
        return self.admit_now(ask)

    async def settle(self, s: Settlement) -> None:
        self.settle_now(s)

    def spent(self, name: str) -> float:
        usd, ends_at = self._spent.get(name, (0.0, 0.0))
        return usd if ends_at > self.clock() else 0.0

    def seed_spent(self, name: str, usd: float, ends_at: float) -> None:
        """Start a budget counter from a known spend (the last one Redis reported)."""
        if self.spent(name) < usd:
            self._spent[name] = (usd, ends_at)

    def _has(self, name: str) -> bool:
        got = self._spent.get(name)
        return got is not None and got[1] > self.clock()

    async def seed(self, items: Sequence[Seed]) -> None:
        self.seed_now(items)

    def seed_now(self, items: Sequence[Seed]) -> None:
        """Set-if-absent: a counter that exists (admitted or seeded before) is never replaced."""
        now = self.clock()
        for name in [n for n, (_, ends_at) in self._spent.items() if ends_at <= now]:
            del self._spent[name]
        for _, b, usd in items:
            if b.name not in self._spent:
                self._spent[b.name] = (max(0.0, usd), b.ends_at)

    def admit_now(self, ask: Ask) -> Verdict:
        """Synchronous: nothing can interleave between the checks and the records."""
        if ask.seed_missing and not all(self._has(b.name) for b in ask.budgets):
            return UNSEEDED
        now = self.clock()
        checks: list[Check] = []
        denied: Limit | Budget | None = None
        wait = 0.0
        for lim in ask.limits:
            if lim.kind == "requests":
                log = self._requests.setdefault(lim.name, deque())
                while log and log[0] <= now - WINDOW_S:
                    log.popleft()
                check = request_window(log, lim.limit, now)
            else:
                buckets = self._tokens.setdefault(lim.name, {})
                for sec in [s for s in buckets if s <= now - WINDOW_S]:
                    del buckets[sec]
                check = token_window(buckets, lim.limit, now)
            checks.append(check)
            if not check.ok and denied is None:
                denied, wait = lim, check.reset_s
        spent = [self.spent(b.name) for b in ask.budgets]
        for b, usd in zip(ask.budgets, spent, strict=True):
            if denied is None and usd >= b.limit_usd:
                denied, wait = b, max(0.0, b.ends_at - now)
        if denied is not None:
            return Verdict(False, tuple(checks), tuple(spent), denied, wait)
        for lim in ask.limits:
            if lim.kind == "requests":
                self._requests[lim.name].append(now)
        for i, b in enumerate(ask.budgets):
            spent[i] += ask.reserve_usd
            self._spent[b.name] = (spent[i], b.ends_at)
        return Verdict(True, tuple(checks), tuple(spent))

    def settle_now(self, s: Settlement) -> None:
        sec = int(self.clock())
        if s.tokens:
            for lim in s.token_limits:
                buckets = self._tokens.setdefault(lim.name, {})
                buckets[sec] = buckets.get(sec, 0) + s.tokens
        if s.delta_usd:
            for b in s.budgets:  # an absent counter stays absent: its seed will hold this cost
                if self._has(b.name):
                    self._spent[b.name] = (max(0.0, self.spent(b.name) + s.delta_usd), b.ends_at)
