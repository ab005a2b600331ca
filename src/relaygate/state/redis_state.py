"""``RedisState``: rate limits, budgets and replica events shared by every replica through Redis.

Limits and budgets run as Lua scripts (``redis_scripts.py``), atomic across replicas. Events go
out twice: a key with a TTL (``{prefix}ev:{kind}:{deployment}``, read at (re)connect) and a
message on ``{prefix}events`` (pub/sub, for the replicas listening now).

Redis is never allowed to fail a request: every command is bounded by ``op_timeout_ms``; on any
error the replica marks itself down (``health()``, ``/healthz`` says ``degraded``) and serves
on its ``MemoryState`` (limits then hold per replica). A supervisor task reconnects with
exponential backoff, re-subscribes, pushes the spend counted locally meanwhile (into counters
that still exist; one that Redis lost is re-seeded from the ledger, which holds that spend), reads
the event keys and emits a local ``resync`` event so the gateway re-publishes its open breakers.
``seed`` creates budget counters with ``SET NX``: replicas seeding at once, or a replica seeding
a counter another one already serves, never double count nor overwrite a live counter.
``publish_event`` sends one event from a process that is not a replica (the CLI's cutoff notice).
Redis errors are translated here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from relaygate.config.state_schema import StateConfig, resolve_redis_url
from relaygate.state.base import (
    UNSEEDED,
    Ask,
    Budget,
    EventHandler,
    Limit,
    MemoryState,
    Seed,
    Settlement,
    StateEvent,
    StateHealth,
    Verdict,
)
from relaygate.state.redis_scripts import ADMIT, SETTLE
from relaygate.state.windows import Check

__all__ = ["RedisState", "SharedStateError", "events_channel", "publish_event"]

log = logging.getLogger("relaygate.state")
_FAILURES = (RedisError, OSError, TimeoutError)
_BUDGET_TTL_MARGIN_S = 86_400  # keep a period's counter a day past its end (late settlements)


class SharedStateError(Exception):
    """Redis could not be reached or refused a command; the redis-py exception is ``__cause__``."""


def events_channel(prefix: str) -> str:
    """The pub/sub channel every replica with ``key_prefix`` ``prefix`` listens on."""
    return f"{prefix}events"


def _queue_event(pipe: Any, prefix: str, event: StateEvent) -> None:
    """Add ``event`` to ``pipe``: its TTL key (breaker and cooldown only) and its message."""
    data = event.to_json()
    ttl_ms = int((event.until - time.time()) * 1000)
    if event.kind in ("breaker_open", "cooldown") and ttl_ms > 0:
        pipe.set(f"{prefix}ev:{event.kind}:{event.subject}", data, px=ttl_ms)
    pipe.publish(events_channel(prefix), data)


async def publish_event(config: StateConfig, event: StateEvent) -> int:
    """Publish one ``event`` from a process that is not a replica (``relaygate cutoff`` on the
    CLI), in the replicas' own format and channel; returns how many subscribers got it.

    One connection, bounded by ``connect_timeout_ms`` and ``op_timeout_ms``. Raises
    ``SharedStateError`` when Redis is unreachable or its URL is not configured."""
    try:
        url = resolve_redis_url(config)
    except ValueError as exc:
        raise SharedStateError(str(exc)) from exc
    if not url:
        raise SharedStateError(f"env var {config.redis_url_env} is not set")
    client = aioredis.Redis.from_url(
        url,
        socket_timeout=config.op_timeout_ms / 1000,
        socket_connect_timeout=config.connect_timeout_ms / 1000,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        async with asyncio.timeout((config.connect_timeout_ms + 2 * config.op_timeout_ms) / 1000):
            async with client.pipeline(transaction=False) as pipe:
                _queue_event(pipe, config.key_prefix, event)
                replies = await pipe.execute()
    except _FAILURES as exc:
        raise SharedStateError(f"redis unreachable: {type(exc).__name__}: {exc}"[:300]) from exc
    finally:
        with contextlib.suppress(*_FAILURES):
            await client.aclose()
    return int(replies[-1])


class RedisState:
    shared = True

    def __init__(self, config: StateConfig, *, origin: str, fallback: MemoryState | None = None) -> None:
        self.config = config
        self.origin = origin
        self.fallback = fallback or MemoryState()
        self._prefix = config.key_prefix
        self._channel = events_channel(self._prefix)
        self._op_s = config.op_timeout_ms / 1000
        self._up = False
        self._reason: str | None = "not connected yet"
        self._on_event: EventHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._unsynced: dict[tuple[str, str], tuple[float, float]] = {}  # (group, name) -> (usd, ends_at)
        self._seen_spent: dict[tuple[str, str], tuple[float, float]] = {}
        self._client: Any = None
        self._sub_client: Any = None
        try:  # `serve` and `check-config` refuse a bad URL before this; here it only degrades
            url = resolve_redis_url(config)
        except ValueError as exc:
            self._reason = str(exc)
            return
        if not url:
            self._reason = f"env var {config.redis_url_env} is not set"
            return
        common: dict[str, Any] = {
            "socket_connect_timeout": config.connect_timeout_ms / 1000,
            "retry": Retry(NoBackoff(), 0),  # fail fast: the fallback is the retry
        }
        self._client = aioredis.Redis.from_url(url, socket_timeout=self._op_s, **common)
        self._sub_client = aioredis.Redis.from_url(url, socket_timeout=None, **common)
        self._admit_script = self._client.register_script(ADMIT)
        self._settle_script = self._client.register_script(SETTLE)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, on_event: EventHandler) -> None:
        """Connect (waiting at most ``connect_timeout_ms``; else start degraded) and subscribe."""
        self._on_event = on_event
        if self._client is None:
            log.error("shared state: %s; serving on local state", self._reason)
            return
        self._task = asyncio.create_task(self._supervise(), name="relaygate-shared-state")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self.config.connect_timeout_ms / 1000 * 2)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for client in (self._client, self._sub_client):
            if client is not None:
                with contextlib.suppress(*_FAILURES):
                    await client.aclose()

    def health(self) -> StateHealth:
        return StateHealth("redis", self._up, None if self._up else self._reason)

    # -- limits and budgets ------------------------------------------------------------------

    async def admit(self, ask: Ask) -> Verdict:
        if self._up:
            try:
                async with asyncio.timeout(self._op_s * 2):
                    return await self._admit_redis(ask)
            except _FAILURES as exc:
                self._mark_down(exc)
        verdict = self.fallback.admit_now(ask)
        if verdict.ok and ask.reserve_usd:
            self._count_unsynced(ask.group, ask.budgets, ask.reserve_usd)
        return verdict

    async def settle(self, s: Settlement) -> None:
        if self._up:
            try:
                async with asyncio.timeout(self._op_s * 2):
                    await self._settle_redis(s)
                return
            except _FAILURES as exc:
                self._mark_down(exc)
        self.fallback.settle_now(s)
        if s.delta_usd:
            self._count_unsynced(s.group, s.budgets, s.delta_usd)

    async def seed(self, items: Sequence[Seed]) -> None:
        """Create each absent budget counter at its ``usd`` (``SET NX``, expiring a day after its
        period); while Redis is down, seed the local fallback instead."""
        if self._up and items:
            try:
                async with asyncio.timeout(max(self._op_s * 2, self.config.connect_timeout_ms / 1000)):
                    now = time.time()
                    async with self._client.pipeline(transaction=False) as pipe:
                        for group, b, usd in items:
                            ttl_ms = max(1, int((b.ends_at - now + _BUDGET_TTL_MARGIN_S) * 1000))
                            pipe.set(self._key(group, b.name), repr(max(0.0, usd)), nx=True, px=ttl_ms)
                        await pipe.execute()
                return
            except _FAILURES as exc:
                self._mark_down(exc)
        self.fallback.seed_now(items)

    def _key(self, group: str, name: str) -> str:
        return f"{self._prefix}{{{group}}}:{name}"

    async def _admit_redis(self, ask: Ask) -> Verdict:
        now = time.time()
        parts: list[Limit | Budget] = [*ask.limits, *ask.budgets]
        keys = [self._key(ask.group, x.name) for x in parts]
        args: list[Any] = [ask.request_id, repr(ask.reserve_usd), len(ask.limits)]
        for lim in ask.limits:
            args += ["r" if lim.kind == "requests" else "t", lim.limit]
        for b in ask.budgets:
            args += [repr(b.limit_usd), int((b.ends_at - now + _BUDGET_TTL_MARGIN_S) * 1000)]
        args.append("1" if ask.seed_missing else "0")
        raw = await self._admit_script(keys=keys, args=args)
        denied, wait = int(raw[0]), float(raw[1])
        if denied < 0:
            return UNSEEDED
        checks = tuple(
            Check(bool(int(raw[2 + 3 * i])), int(raw[3 + 3 * i]), float(raw[4 + 3 * i]))
            for i in range(len(ask.limits))
        )
        spent = tuple(float(v) for v in raw[2 + 3 * len(ask.limits) :])
        for b, usd in zip(ask.budgets, spent, strict=True):
            self._seen_spent[(ask.group, b.name)] = (usd, b.ends_at)
        if not denied:
            return Verdict(True, checks, spent)
        what = parts[denied - 1]
        if isinstance(what, Budget):
            wait = max(0.0, what.ends_at - now)
        return Verdict(False, checks, spent, what, wait)

    async def _settle_redis(self, s: Settlement) -> None:
        now = time.time()
        parts: list[Limit | Budget] = [*s.token_limits, *s.budgets]
        keys = [self._key(s.group, x.name) for x in parts]
        args: list[Any] = [len(s.token_limits), s.tokens, repr(s.delta_usd)]
        args += [int((b.ends_at - now + _BUDGET_TTL_MARGIN_S) * 1000) for b in s.budgets]
        await self._settle_script(keys=keys, args=args)

    def _count_unsynced(self, group: str, budgets: tuple[Budget, ...], usd: float) -> None:
        for b in budgets:
            old, _ = self._unsynced.get((group, b.name), (0.0, b.ends_at))
            self._unsynced[(group, b.name)] = (old + usd, b.ends_at)

    # -- events ------------------------------------------------------------------------------

    async def publish(self, event: StateEvent) -> None:
        """Best effort: while down nothing is sent; the gateway re-publishes at ``resync``."""
        if not self._up:
            return
        try:
            async with asyncio.timeout(self._op_s * 2):
                async with self._client.pipeline(transaction=False) as pipe:
                    _queue_event(pipe, self._prefix, event)
                    await pipe.execute()
        except _FAILURES as exc:
            self._mark_down(exc)

    def _mark_down(self, exc: BaseException) -> None:
        reason = f"redis unreachable: {type(exc).__name__}: {exc}"[:300]
        if self._up:
            log.warning("shared state down, serving on local state: %s", reason)
            # Start local budgets from the last spend Redis reported, not from zero.
            for (_, name), (usd, ends_at) in self._seen_spent.items():
                self.fallback.seed_spent(name, usd, ends_at)
        self._up, self._reason = False, reason

    async def _supervise(self) -> None:
        delay = self.config.reconnect_min_ms / 1000
        while True:
            pubsub = None
            try:
                async with asyncio.timeout(self.config.connect_timeout_ms / 1000 * 2):
                    await self._client.ping()
                    pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(self._channel)
                    await self._push_unsynced()
                    stored = await self._stored_events()
                self._up, self._reason = True, None
                self._connected.set()
                log.info("shared state up (redis)")
                delay = self.config.reconnect_min_ms / 1000
                for ev in stored:
                    await self._deliver(ev)
                await self._deliver(StateEvent("resync", origin=self.origin))
                while self._up:
                    msg = await pubsub.get_message(timeout=0.25)
                    if msg is not None and msg.get("type") == "message":
                        got = StateEvent.from_json(msg["data"])
                        if got is not None and got.origin != self.origin:
                            await self._deliver(got)
            except asyncio.CancelledError:
                raise
            except (*_FAILURES, RuntimeError) as exc:
                self._mark_down(exc)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*_FAILURES, RuntimeError):
                        await pubsub.aclose()
            self._connected.set()  # start() waits for the first attempt, up or not
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max_ms / 1000)

    async def _push_unsynced(self) -> None:
        """Spend counted locally while Redis was down goes into the shared counters that still
        exist. A counter Redis lost (restart without AOF, flush) is left absent: the next request
        re-seeds it from the ledger, which has those rows. (A counter another replica re-seeded
        before this one reconnects gets this replica's outage spend twice: an overcount, the safe
        side, bounded by the outage.)"""
        while self._unsynced:
            (group, name), (usd, ends_at) = next(iter(self._unsynced.items()))
            budget = Budget(name, 0.0, "day", ends_at)
            await self._settle_redis(Settlement(group, (), 0, (budget,), usd))
            del self._unsynced[(group, name)]

    async def _stored_events(self) -> list[StateEvent]:
        keys = [k async for k in self._client.scan_iter(match=f"{self._prefix}ev:*", count=500)]
        values = await self._client.mget(keys) if keys else []
        events = [StateEvent.from_json(v) for v in values if v is not None]
        return [e for e in events if e is not None and e.origin != self.origin]

    async def _deliver(self, event: StateEvent) -> None:
        if self._on_event is None:
            return
        try:
            await self._on_event(event)
        except Exception:  # a handler bug must not stop the listener
            log.exception("applying shared-state event %s failed", event)
