"""The pure arithmetic of rate-limit windows and budget periods (no I/O, no clock of its own).

Requests: an exact sliding-window log (one timestamp per admitted request; a request is admitted
while fewer than ``limit`` timestamps lie in the last 60 s), so a limit of N admits exactly N in
any minute, however many replicas share it. Tokens: per-second buckets summed over the last 60 s
(charged after the call with real usage, so 1 s granularity is plenty). Budgets: UTC calendar
day and month. ``redis_scripts.py`` runs the same rules inside Redis; both are tested by tables.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["WINDOW_S", "Check", "budget_periods", "period_starts", "request_window", "token_window"]

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    """One window's answer: ``ok`` (admit), ``used`` (in the window, counting this request when
    admitted), ``reset_s`` (seconds until the window next frees room; when refused, the wait)."""

    ok: bool
    used: int
    reset_s: float


def request_window(times: Sequence[float], limit: int, now: float) -> Check:
    """``times``: ascending epoch seconds of requests admitted in ``(now - 60, now]``."""
    n = len(times)
    if n >= limit:
        return Check(False, n, max(0.0, times[n - limit] + WINDOW_S - now))
    oldest = times[0] if times else now
    return Check(True, n + 1, max(0.0, oldest + WINDOW_S - now))


def token_window(buckets: Mapping[int, int], limit: int, now: float) -> Check:
    """``buckets``: epoch second -> tokens charged in that second. Buckets at or before
    ``now - 60`` are ignored. Refused while the window already holds ``limit`` tokens."""
    live = sorted((s, t) for s, t in buckets.items() if s > now - WINDOW_S)
    used = sum(t for _, t in live)
    if used < limit:
        return Check(True, used, max(0.0, live[0][0] + WINDOW_S - now) if live else 0.0)
    left = used
    for sec, tokens in live:
        left -= tokens
        if left < limit:
            return Check(False, used, max(0.0, sec + WINDOW_S - now))
    return Check(False, used, WINDOW_S)  # unreachable: the loop empties the window


def budget_periods(now: float) -> tuple[tuple[str, float], tuple[str, float]]:
    """``((day, day_end), (month, month_end))`` for epoch seconds ``now``: labels like
    ``2026-11-29`` / ``2026-11`` and each period's end in epoch seconds (UTC)."""
    t = datetime.fromtimestamp(now, UTC)
    day_start = calendar.timegm((t.year, t.month, t.day, 0, 0, 0))
    days = calendar.monthrange(t.year, t.month)[1]
    month_start = calendar.timegm((t.year, t.month, 1, 0, 0, 0))
    return (
        (f"{t:%Y-%m-%d}", float(day_start + 86_400)),
        (f"{t:%Y-%m}", float(month_start + days * 86_400)),
    )


def period_starts(now: float) -> tuple[float, float]:
    """``(day_start, month_start)``: the epoch seconds at which the UTC day and month holding
    ``now`` began (where a budget's ledger spend is summed from)."""
    t = datetime.fromtimestamp(now, UTC)
    return (
        float(calendar.timegm((t.year, t.month, t.day, 0, 0, 0))),
        float(calendar.timegm((t.year, t.month, 1, 0, 0, 0))),
    )
