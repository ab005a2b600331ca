"""Pure failover decisions: retry the same deployment, or move on, and how long to wait.

Rules (issue #2): 429 rate limits and 5xx are retried on the same deployment with exponential
backoff and full jitter ("Exponential Backoff and Jitter", AWS Architecture Blog, 2015); an
upstream ``Retry-After`` (RFC 9110 10.2.3) replaces the backoff, and a wait longer than
``max_wait_ms`` sends the request to the next deployment at once. Everything else that is not
the client's own error moves on without a retry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from relaygate.config.schema import RetryConfig
from relaygate.errors import ErrorClass, UpstreamError

__all__ = ["Action", "Decision", "backoff_s", "counts_against_breaker", "decide"]


class Action(StrEnum):
    RETRY = "retry"  # same deployment after ``delay_s``
    NEXT = "next"  # next candidate now
    RELAY = "relay"  # stop: the client's own error, relay it unchanged


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    reason: str = ""


# Failures that say the deployment is unhealthy (rate limits and request-specific rejections
# do not: a 429 is handled by Retry-After cooldowns, a 400 by the client).
_BREAKER_CLASSES = frozenset(
    {
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECTION,
        ErrorClass.MALFORMED,
        ErrorClass.STREAM_CUT,
        ErrorClass.REGION_BLOCKED,
        ErrorClass.AUTH,
        ErrorClass.QUOTA_EXHAUSTED,
    }
)


def counts_against_breaker(cls: ErrorClass) -> bool:
    return cls in _BREAKER_CLASSES


def backoff_s(attempt: int, cfg: RetryConfig, rng: random.Random) -> float:
    """Full-jitter backoff before retry number ``attempt`` (1 = first retry), in seconds."""
    cap = min(cfg.backoff_max_ms, cfg.backoff_base_ms * 2 ** (attempt - 1)) / 1000
    return rng.uniform(0, cap)


def decide(err: UpstreamError, attempt: int, cfg: RetryConfig, rng: random.Random) -> Decision:
    """What to do after attempt number ``attempt`` (1-based) on one deployment failed with ``err``."""
    cls = err.error_class
    if cls is ErrorClass.CLIENT_ERROR:
        return Decision(Action.RELAY, reason="client error: never fails over")
    if not err.retryable:
        return Decision(Action.NEXT, reason=f"{cls.value}: move on without retrying")
    if attempt >= cfg.max_attempts:
        return Decision(Action.NEXT, reason=f"{cls.value}: retries exhausted ({attempt})")
    if err.retry_after_s is not None:
        if err.retry_after_s * 1000 > cfg.max_wait_ms:
            return Decision(Action.NEXT, reason=f"Retry-After {err.retry_after_s:g}s exceeds max_wait_ms")
        return Decision(Action.RETRY, err.retry_after_s, "honouring Retry-After")
    return Decision(Action.RETRY, backoff_s(attempt, cfg, rng), f"{cls.value}: backoff")
