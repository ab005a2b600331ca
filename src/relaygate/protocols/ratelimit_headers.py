"""Rate-limit response headers in each wire's own names (pure).

OpenAI (https://platform.openai.com/docs/guides/rate-limits, "Rate limits in headers"):
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
``x-ratelimit-reset-requests`` (a duration such as ``1s``, ``6m0s``, ``20ms``) and the same
three with ``-tokens``.
Anthropic (https://docs.anthropic.com/en/api/rate-limits, "Response headers"):
``anthropic-ratelimit-requests-limit`` / ``-remaining`` / ``-reset`` (an RFC 3339 time) and
the same for ``tokens``; ``retry-after`` on a 429 (set by ``errors.RateLimitError``).
When a key limit and a tenant limit of the same kind both apply, the one with fewer remaining
is reported (the one the client will meet first).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from relaygate.state.base import Ask, Verdict
from relaygate.state.windows import Check

__all__ = ["Wire", "go_duration", "ratelimit_headers"]

Wire = Literal["openai", "anthropic"]


def go_duration(seconds: float) -> str:
    """``0.02`` -> ``20ms``, ``1.5`` -> ``1.5s``, ``360`` -> ``6m0s`` (OpenAI's reset format)."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes >= 1 else text


def _tightest(ask: Ask, verdict: Verdict, kind: str) -> tuple[int, int, float] | None:
    """(limit, remaining, reset_s) of the limit of ``kind`` with the fewest remaining."""
    best: tuple[int, int, float] | None = None
    for lim, check in zip(ask.limits, verdict.checks, strict=False):
        if lim.kind != kind:
            continue
        remaining = max(0, lim.limit - check.used) if isinstance(check, Check) else 0
        if best is None or remaining < best[1]:
            best = (lim.limit, remaining, check.reset_s)
    return best


def ratelimit_headers(wire: Wire, ask: Ask, verdict: Verdict, now: float) -> dict[str, str]:
    """Headers for ``verdict``; ``now`` in epoch seconds (for Anthropic's absolute resets)."""
    out: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        t = _tightest(ask, verdict, kind)
        if t is None:
            continue
        limit, remaining, reset_s = t
        if wire == "openai":
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            out[f"x-ratelimit-reset-{kind}"] = go_duration(reset_s)
        else:
            at = datetime.fromtimestamp(math.ceil(now + reset_s), UTC)  # never earlier than true
            out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{kind}-reset"] = at.isoformat().replace("+00:00", "Z")
    return out
