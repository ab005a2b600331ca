"""Ledger record types: one ``UsageRecord`` per client request, with every upstream attempt.

These are plain frozen-ish dataclasses so the hot path builds them cheaply; the store
(``ledger/store.py``) maps them to rows. Units: tokens, USD, milliseconds, UTC time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1
_V7_BITS = (0x7 << 76) | (0b10 << 62)  # version 7 and the RFC 9562 variant


def new_request_id(prefix: str = "req_") -> str:
    """A new request id: ``prefix`` + 32 lowercase hex digits, the layout of a UUIDv7
    (RFC 9562 §5.7): 48 bits of Unix time in milliseconds, then version, 74 random bits, and
    the variant. Ids sort by the millisecond they were made in, so the ledger's request-id
    indexes (usage, payloads) grow at their right edge like the time index does: a random id
    (v4) lands on a random index page, and on SQLite that took about 60% of a batch insert's
    CPU (bench/flamegraphs/README.md, "Third round"; RFC 9562 §6.10 on index locality).
    74 random bits keep ids unguessable and unique within a millisecond.
    """
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    value = ((time.time_ns() // 1_000_000) & _MS_MASK) << 80 | _V7_BITS
    value |= (rand >> 68) << 64 | (rand & _RAND_B_MASK)
    return f"{prefix}{value:032x}"


@dataclass(slots=True)
class AttemptRecord:
    """One upstream attempt.

    ``status`` is the upstream HTTP status (None when no response: timeout, connection error,
    skipped by an open breaker). ``error_class`` is an ``errors.ErrorClass`` value or None on
    success. ``latency_ms`` is wall time of the attempt in milliseconds.
    """

    deployment: str
    provider: str
    status: int | None
    error_class: str | None
    latency_ms: float


@dataclass(slots=True)
class UsageRecord:
    """One client request, as the ledger stores it.

    - ``status``: HTTP status the client got (for a stream: 200, even if it was cut later).
    - ``error_code``: the OpenAI-style ``code`` of the error the client saw, or None.
    - ``complete``: False when a stream ended without finish_reason/[DONE] or was cut.
    - ``prompt_tokens``/``completion_tokens``/``cached_tokens``: from upstream ``usage``
      (for streams, the final usage chunk); None when upstream did not report them.
    - ``cost_usd``: computed from the served deployment's prices (USD per 1M tokens).
    - ``latency_ms``: request start to last byte; ``ttft_ms``: to the first content byte.
    - ``tenant_region``: the region whose law applied (e.g. ``"EU"``); ``data_class``: the
      request's class (``public``, ``internal``, ``personal``, ``restricted``).
    - ``pii_entities``: entity types detected in the prompt (e.g. ``["EMAIL_ADDRESS"]``), never values.
    - ``policy``: the full policy decision as a JSON object (candidates and exclusion reasons).
    - ``cache``: the response cache's verdict: ``hit`` / ``semantic_hit`` (answered from the
      cache: no attempts, zero cost), ``miss``, ``skip``; None when the route does not cache.
    """

    request_id: str
    ts: datetime
    endpoint: str
    status: int
    tenant: str | None = None
    key_id: str | None = None
    route: str | None = None
    stream: bool = False
    error_code: str | None = None
    served_deployment: str | None = None
    served_provider: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    complete: bool = True
    finish_reason: str | None = None
    tenant_region: str | None = None
    data_class: str | None = None
    pii_entities: list[str] | None = None
    policy: dict[str, Any] | None = None
    cache: str | None = None
