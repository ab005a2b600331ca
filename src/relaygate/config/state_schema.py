"""Strict schema of the ``state:`` section (where replicas share state) and of the rate-limit and
budget settings carried by tenants and config-declared keys.

Like ``schema.py``: unknown keys are errors and every model is frozen. Units: requests and tokens
per minute (a sliding 60 s window), USD per UTC calendar day / month, timeouts in milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["BudgetConfig", "RateLimits", "StateConfig", "redis_url_problem", "resolve_redis_url"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimits(_Strict):
    """Requests and tokens (prompt + completion, as upstream reports them) per sliding minute.
    ``None``: no limit of that kind. Token limits are checked before the call (a request is
    refused while the window already holds the limit) and charged with real usage after it."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)

    @property
    def empty(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None


class BudgetConfig(_Strict):
    """A tenant's spend limits in USD per UTC calendar day and month (``None``: no limit).

    Before each call an estimate is reserved (see ``relaygate.admission``); a request that would
    start while the period's spend (settled + reserved) is at or above the limit gets 429
    ``budget_exceeded``. ``default_max_tokens`` is the completion length assumed for the
    estimate when a request sets no ``max_tokens``. Spend survives restarts: counters are seeded
    from the usage ledger (``relaygate.admission``).
    """

    usd_per_day: float | None = Field(None, gt=0)
    usd_per_month: float | None = Field(None, gt=0)
    default_max_tokens: int = Field(1024, ge=1)


class StateConfig(_Strict):
    """Where rate limits, budgets, breaker openings, cooldowns and cutoff notices live.

    ``memory`` (default): in this process only, for a single replica. ``redis``: shared by every
    replica through ``redis_url`` (or the env var ``redis_url_env`` naming it, for URLs with a
    password), keys under ``key_prefix``. ``op_timeout_ms`` bounds every Redis command on the
    request path: past it (or on any Redis error) the replica serves on local state, reports
    ``degraded`` in ``/healthz``, and reconnects in the background with exponential backoff
    from ``reconnect_min_ms`` up to ``reconnect_max_ms``.
    """

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    redis_url_env: str | None = None
    key_prefix: str = Field("relaygate:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    op_timeout_ms: int = Field(100, gt=0, le=10_000)
    connect_timeout_ms: int = Field(500, gt=0, le=30_000)
    reconnect_min_ms: int = Field(100, gt=0)
    reconnect_max_ms: int = Field(5_000, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        problem = None if v is None else redis_url_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _backend(self) -> StateConfig:
        if self.backend == "redis" and (self.redis_url is None) == (self.redis_url_env is None):
            raise ValueError("backend redis needs exactly one of redis_url or redis_url_env")
        if self.reconnect_max_ms < self.reconnect_min_ms:
            raise ValueError("reconnect_max_ms must be at least reconnect_min_ms")
        return self


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL redis-py can open (None when it is): the scheme must be
    ``redis://``, ``rediss://`` or ``unix://`` (what redis-py's ``Redis.from_url`` opens), a
    port and a database path ``/N`` must be numbers, a ``unix://`` URL needs a socket path. The
    URL's host and password are never echoed."""
    try:
        parts = urlsplit(url.strip())
        scheme, path = parts.scheme.lower(), parts.path
        if scheme not in ("redis", "rediss", "unix"):
            return "must start with redis://, rediss:// or unix://"
        if scheme == "unix":
            return None if path else "unix:// needs a socket path, e.g. unix:///run/redis.sock"
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        return "not a valid URL (check the host and port)"
    if path not in ("", "/") and not path[1:].isdigit():
        return f"the database must be a number, e.g. redis://host:6379/0, not {path[1:]!r}"
    return None


def resolve_redis_url(config: StateConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL ``config`` names: ``redis_url``, else the value of the env var
    ``redis_url_env`` (``environ`` defaults to ``os.environ``); None when neither is set.

    Raises ``ValueError`` (one line naming the variable, never its value) when the env var holds
    something that is not a Redis URL; an inline ``redis_url`` was checked when loading."""
    if config.redis_url is not None:
        return config.redis_url
    if not config.redis_url_env:
        return None
    env = os.environ if environ is None else environ
    url = env.get(config.redis_url_env, "").strip()
    if not url:
        return None
    problem = redis_url_problem(url)
    if problem is not None:
        raise ValueError(f"the value of {config.redis_url_env} is not a Redis URL: {problem}")
    return url
