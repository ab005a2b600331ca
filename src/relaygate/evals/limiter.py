"""Adaptive concurrency for one eval target: how many of the run's requests to it may be in flight.

A rate limit (429, ``RateLimitError``) halves the target's limit and pauses it for the
Retry-After; successes raise it again by one per round (additive increase, multiplicative
decrease, as TCP congestion control, RFC 5681). The runner (``evals/runner.py``) keeps one per
target; the case executor (``evals/executor.py``) takes a slot per request and reports back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["AdaptiveLimiter"]

_MAX_WAIT_S = 60.0


class AdaptiveLimiter:
    """Concurrency limit for one target: halved (at most once per pause) on a rate limit, with a
    pause of the Retry-After; raised by one after ``limit`` successes in a row, up to
    ``max_concurrency``. ``history`` lists every limit taken, starting value first."""

    def __init__(self, max_concurrency: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.limit = self.max_concurrency
        self.in_flight = 0
        self.paused_until = 0.0
        self.history = [self.limit]
        self._clock = clock
        self._ok = 0
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while True:
            wait = self.paused_until - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.in_flight < self.limit:
                self.in_flight += 1
                return
            self._freed.clear()
            await self._freed.wait()

    def release(self) -> None:
        self.in_flight -= 1
        self._freed.set()

    def on_rate_limit(self, retry_after_s: float) -> None:
        now = self._clock()
        if now >= self.paused_until:  # one cut per pause: a burst of 429s is one signal
            self.limit = max(1, self.limit // 2)
            self.history.append(self.limit)
        self.paused_until = max(self.paused_until, now + min(max(retry_after_s, 0.0), _MAX_WAIT_S))
        self._ok = 0

    def on_success(self) -> None:
        self._ok += 1
        if self._ok >= self.limit and self.limit < self.max_concurrency:
            self.limit += 1
            self.history.append(self.limit)
            self._ok = 0
            self._freed.set()
