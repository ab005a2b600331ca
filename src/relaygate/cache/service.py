"""The response cache as the request path sees it: ``lookup`` before routing, ``store`` after a
successful answer. Composes the pure keys, a backend (in-process LRU or Redis) and, for routes
that opt in, the semantic index.

Rules (see ``keys.skip_reason`` for what is never cached): only 200 answers are stored (a
stream only when it completed normally); a hit is served only while policy still allows the
deployment that produced it for this request (so a cached answer never reaches a tenant, region
or data class the policy would not route to that deployment); entries are per tenant unless the
route sets ``share_across_tenants``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from relaygate.cache.entry import CacheEntry
from relaygate.cache.keys import CacheKeys, cache_keys, request_bypass, skip_reason
from relaygate.cache.memory import MemoryCache
from relaygate.config.cache_schema import CacheConfig, RouteCacheConfig

if TYPE_CHECKING:
    import numpy as np

    from relaygate.cache.semantic import Embedder, SemanticIndex
    from relaygate.config.schema import Config

__all__ = ["CacheBackend", "Lookup", "ResponseCache"]

log = logging.getLogger("relaygate.cache")
CACHE_HEADER = "x-relaygate-cache"
MATCH_HEADER = "x-relaygate-cache-match"


class CacheBackend(Protocol):
    async def get(self, key: str) -> CacheEntry | None: ...
    async def set(self, key: str, entry: CacheEntry, ttl_s: float) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...


@dataclass(slots=True)
class Lookup:
    """The cache's verdict on one request.

    ``status``: None (the route does not cache), ``skip`` (not looked up: ``reason`` says why),
    ``miss``, ``hit`` (exact) or ``semantic_hit`` (``similarity`` is the cosine). ``entry`` is
    the answer to serve on a hit. ``status`` is what the ledger's ``cache`` column records.
    ``refresh``: a skip whose fresh answer is stored all the same (``Cache-Control: no-cache``).
    """

    status: str | None = None
    reason: str | None = None
    keys: CacheKeys | None = None
    entry: CacheEntry | None = None
    similarity: float | None = None
    ttl_s: float = 0.0
    vector: np.ndarray | None = field(default=None, repr=False)
    refresh: bool = False

    @property
    def hit(self) -> bool:
        return self.entry is not None

    @property
    def storable(self) -> bool:
        return (self.status == "miss" or self.refresh) and self.keys is not None

    def headers(self) -> dict[str, str]:
        """``x-relaygate-cache: hit|miss|skip`` and, on a hit, ``x-relaygate-cache-match: exact``
        or ``semantic; similarity=0.9712``; a skip names its reason (``skip; reason=temperature``
        in ``x-relaygate-cache-match``). Empty when the route does not cache."""
        if self.status is None:
            return {}
        if self.status == "semantic_hit":
            return {CACHE_HEADER: "hit", MATCH_HEADER: f"semantic; similarity={self.similarity:.4f}"}
        if self.status == "hit":
            return {CACHE_HEADER: "hit", MATCH_HEADER: "exact"}
        if self.status == "skip":
            return {CACHE_HEADER: "skip", MATCH_HEADER: f"none; reason={self.reason}"}
        return {CACHE_HEADER: self.status}


_NONE = Lookup()


class ResponseCache:
    """One per gateway process; survives config reloads (route settings are read per request).

    ``redis_url``: the resolved URL when ``config.backend`` is ``redis``. ``embedder``: a factory
    of the semantic cache's embedder (default: the local MiniLM), built on first use.
    """

    def __init__(
        self,
        config: CacheConfig,
        *,
        redis_url: str | None = None,
        embedder: Callable[[], Embedder] | None = None,
        clock: Callable[[], float] = time.monotonic,
        warm_semantic: bool = False,
    ) -> None:
        self.config = config
        self._warm_semantic = warm_semantic
        self.backend: CacheBackend
        if config.backend == "redis":
            from relaygate.cache.redis_cache import RedisCache

            if not redis_url:
                raise ValueError("the redis cache backend needs a Redis URL")
            self.backend = RedisCache(redis_url, prefix=config.key_prefix, timeout_ms=config.redis_timeout_ms)
        else:
            self.backend = MemoryCache(config.max_entries, int(config.max_mb * 1024 * 1024), clock=clock)
        self._embedder_factory = embedder
        self._clock = clock
        self._semantic: SemanticIndex | None = None
        self._semantic_broken = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.embed_count = 0
        self.embed_ms_total = 0.0

    async def start(self) -> None:
        """Open the backend; with ``warm_semantic``, load the embedding model in the background
        (~0.2 s) so the first semantic lookup does not pay for it."""
        await self.backend.start()
        index = self._index() if self._warm_semantic else None
        if index is not None:
            task = asyncio.get_running_loop().create_task(self._warm(index))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _warm(self, index: SemanticIndex) -> None:
        try:
            await asyncio.to_thread(index.embedder.embed, ["warm-up"])
        except Exception as exc:  # reported again, and the semantic cache disabled, on first use
            log.error("semantic cache: the embedding model failed to load: %s", exc)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backend.close()

    async def lookup(
        self,
        config: Config,
        tenant: str | None,
        route: str,
        data: dict[str, Any],
        allowed: Collection[str],
        cache_control: str | None = None,
    ) -> Lookup:
        """The verdict for OpenAI-shaped request ``data`` on ``route`` for ``tenant``; ``allowed``
        holds the deployment ids policy allows for this request; ``cache_control`` is the
        client's ``Cache-Control`` header (``no-cache``: skip the lookup, store the answer;
        ``no-store``: neither). Never raises for a backend failure (a miss)."""
        route_cfg = config.routes[route].cache if route in config.routes else None
        if route_cfg is None or not route_cfg.enabled:
            return _NONE
        reason = skip_reason(data, route_cfg)
        if reason is not None:
            return Lookup("skip", reason)
        bypass = request_bypass(cache_control)
        if bypass == "no-store":
            return Lookup("skip", bypass)
        keys = cache_keys(data, route, tenant, route_cfg)
        ttl_s = route_cfg.ttl_s or self.config.default_ttl_s
        if bypass == "no-cache":
            return Lookup("skip", bypass, keys=keys, ttl_s=ttl_s, refresh=True)
        entry = await self.backend.get(keys.exact)
        if entry is not None and entry.deployment in allowed:
            return Lookup("hit", keys=keys, entry=entry, ttl_s=ttl_s)
        look = Lookup("miss", keys=keys, ttl_s=ttl_s)
        if route_cfg.semantic.enabled and keys.query is not None:
            await self._semantic_lookup(look, keys, route_cfg, allowed)
        return look

    async def _semantic_lookup(
        self, look: Lookup, keys: CacheKeys, route_cfg: RouteCacheConfig, allowed: Collection[str]
    ) -> None:
        index = self._index()
        if index is None or keys.query is None:
            return
        t0 = time.perf_counter()
        try:
            vectors = await asyncio.to_thread(index.embedder.embed, [keys.query])
        except Exception as exc:  # the model missing or broken must not fail requests
            self._semantic_broken = True
            log.error("semantic cache disabled: embedding failed: %s", exc)
            return
        self.embed_count += 1
        self.embed_ms_total += (time.perf_counter() - t0) * 1000
        look.vector = vectors[0]
        near = index.nearest(keys.scope, keys.context, look.vector)
        if near is None or near.similarity < route_cfg.semantic.threshold:
            return
        entry = await self.backend.get(near.key)
        if entry is None:
            index.forget(keys.scope, near.key)  # expired or evicted from the backend
        elif entry.deployment in allowed:
            look.status, look.entry, look.similarity = "semantic_hit", entry, near.similarity

    def _index(self) -> SemanticIndex | None:
        if self._semantic_broken:
            return None
        if self._semantic is None:
            from relaygate.cache.semantic import SemanticIndex, default_embedder

            embedder = (self._embedder_factory or default_embedder)()
            self._semantic = SemanticIndex(embedder, max_per_scope=self.config.max_entries, clock=self._clock)
        return self._semantic

    async def store(self, look: Lookup, body: bytes, deployment: str | None, provider: str | None) -> None:
        """Keep ``body`` (a 200 ``chat.completion``) under the lookup's key; a no-op unless the
        lookup was a miss. Backend failures are logged by the backend, never raised."""
        if not look.storable or look.keys is None:
            return
        entry = CacheEntry(body, deployment, provider, time.time(), look.keys.context)
        await self.backend.set(look.keys.exact, entry, look.ttl_s)
        if look.vector is not None and self._semantic is not None:
            self._semantic.add(look.keys.scope, look.keys.exact, look.keys.context, look.vector, look.ttl_s)

    def store_soon(self, look: Lookup, body: bytes, deployment: str | None, provider: str | None) -> None:
        """``store`` in a background task, so the answer is not held back by the write."""
        if not look.storable:
            return
        task = asyncio.get_running_loop().create_task(self._store_logged(look, body, deployment, provider))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_logged(
        self, look: Lookup, body: bytes, deployment: str | None, provider: str | None
    ) -> None:
        try:
            await self.store(look, body, deployment, provider)
        except Exception:
            log.exception("storing a cache entry failed")

    def health(self) -> dict[str, Any]:
        """``{"backend": "memory"|"redis", "degraded": bool, "reason": str | None}``: degraded
        while the Redis backend's last call failed (requests are then served as misses)."""
        down = getattr(self.backend, "down", None)
        return {"backend": self.config.backend, "degraded": down is not None, "reason": down}

    def stats(self) -> dict[str, Any]:
        """Backend size and error counts and the semantic embedding cost (ms per query)."""
        out: dict[str, Any] = {"backend": self.config.backend}
        for attr in ("bytes", "evictions", "errors"):
            value = getattr(self.backend, attr, None)
            if isinstance(value, int):
                out[attr] = value
        if isinstance(self.backend, MemoryCache):
            out["entries"] = len(self.backend)
        if self.embed_count:
            out["embed_ms_avg"] = round(self.embed_ms_total / self.embed_count, 3)
        return out


def build_response_cache(config: Config) -> ResponseCache:
    """The cache ``config.cache`` describes. Its Redis URL: ``cache.redis_url``, else the
    ``state:`` section's ``redis_url``, else the env var named by ``state.redis_url_env``."""
    import os

    url = config.cache.redis_url or config.state.redis_url
    if url is None and config.state.redis_url_env:
        url = os.environ.get(config.state.redis_url_env)
    warm = any(r.cache.enabled and r.cache.semantic.enabled for r in config.routes.values())
    return ResponseCache(config.cache, redis_url=url, warm_semantic=warm)
