"""Cached answers in Redis, shared by every replica (``SET key value PX ttl`` / ``GET key``).

Redis is an accelerator here, never a dependency of a request: a connection error, a timeout
(``timeout_ms``, default 100 ms) or a foreign value is a miss on ``get`` and a dropped write on
``set``, counted in ``errors`` and logged at most once every ``LOG_EVERY_S`` seconds. ``down``
holds the reason of the last failed call until a call succeeds again (``/healthz`` reports it).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from relaygate.cache.entry import CacheEntry, EntryFormatError

__all__ = ["RedisCache"]

log = logging.getLogger("relaygate.cache")
LOG_EVERY_S = 30.0


class RedisCache:
    """``url``: ``redis://host:port/db``; keys are ``prefix + key``."""

    def __init__(self, url: str, *, prefix: str, timeout_ms: int) -> None:
        self.url, self.prefix = url, prefix
        self._timeout_s = timeout_ms / 1000
        self._client: aioredis.Redis | None = None
        self.errors = 0
        self.down: str | None = None
        self._logged_at = -LOG_EVERY_S

    async def start(self) -> None:
        # No connection is made here: the pool connects on first use, so a Redis that is down
        # at start-up only means misses.
        self._client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            health_check_interval=30,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        if not isinstance(exc, EntryFormatError):  # a foreign value is not an outage
            self.down = f"redis {op} failed: {type(exc).__name__}: {exc}"[:300]
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("cache %s on Redis failed (served as a miss): %r", op, exc)

    async def get(self, key: str) -> CacheEntry | None:
        if self._client is None:
            return None
        try:
            raw = await asyncio.wait_for(self._client.get(self.prefix + key), self._timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return None
        self.down = None
        if raw is None:
            return None
        try:
            return CacheEntry.from_bytes(raw if isinstance(raw, bytes) else str(raw).encode())
        except EntryFormatError as exc:
            self._failed("decode", exc)
            return None

    async def set(self, key: str, entry: CacheEntry, ttl_s: float) -> None:
        if self._client is None:
            return
        try:
            await asyncio.wait_for(
                self._client.set(self.prefix + key, entry.to_bytes(), px=max(1, int(ttl_s * 1000))),
                self._timeout_s,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("set", exc)
            return
        self.down = None
