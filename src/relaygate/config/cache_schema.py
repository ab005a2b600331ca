"""Config of the response cache: the top-level ``cache:`` section and each route's ``cache:``.

Units: seconds for TTLs, MiB for sizes, milliseconds for Redis timeouts. Caching is off unless a
route enables it; see ``relaygate.cache`` for what is cached and what is skipped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CacheConfig", "RouteCacheConfig", "SemanticCacheConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SemanticCacheConfig(_Strict):
    """Serve an answer cached for a *similar* question (cosine of the last user message's
    all-MiniLM-L6-v2 embeddings >= ``threshold``) when everything else in the request (system
    prompt, earlier turns, parameters, tools) is identical. Opt-in per route."""

    enabled: bool = False
    threshold: float = Field(0.95, gt=0, le=1, description="cosine similarity in (0, 1]")


class RouteCacheConfig(_Strict):
    """Per-route cache switch and policy.

    - ``ttl_s``: lifetime of an entry (seconds); None: ``cache.default_ttl_s``.
    - ``allow_nonzero_temperature``: also cache sampled answers (``temperature > 0``, or no
      temperature at all, which means the provider default of 1.0).
    - ``share_across_tenants``: one entry serves every tenant (never the default: an answer can
      carry a tenant's own data).
    """

    enabled: bool = False
    ttl_s: float | None = Field(None, gt=0)
    allow_nonzero_temperature: bool = False
    share_across_tenants: bool = False
    semantic: SemanticCacheConfig = SemanticCacheConfig()


class CacheConfig(_Strict):
    """Where cached answers live. ``memory``: an in-process LRU bounded by ``max_entries`` and
    ``max_mb`` (per replica). ``redis``: shared by every replica, at ``redis_url`` (else the
    ``state:`` section's ``redis_url`` / ``redis_url_env``), keys under ``key_prefix``; a Redis
    error or a reply slower than ``redis_timeout_ms`` is a miss, never a failed request.
    ``max_entries`` also bounds each (route, tenant) semantic index."""

    backend: Literal["memory", "redis"] = "memory"
    max_entries: int = Field(10_000, ge=1)
    max_mb: float = Field(256.0, gt=0)
    default_ttl_s: float = Field(3600.0, gt=0)
    redis_url: str | None = Field(None, description="redis:// URL; None: the state: section's")
    key_prefix: str = "relaygate:cache:"
    redis_timeout_ms: int = Field(100, ge=1)
