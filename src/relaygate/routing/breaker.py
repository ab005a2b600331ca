"""Per-deployment circuit breaker: a pure state machine over (event, now).

closed --(failure_threshold consecutive failures)--> open --(cooldown_s elapsed)--> half_open
half_open --(probe succeeds)--> closed;  half_open --(probe fails)--> open (cooldown restarts)
any --(apply_remote_open: another replica opened it, ``remaining_s`` left)--> open until then

While half-open at most ``half_open_requests`` probes are in flight. Pattern as described by
M. Nygard, "Release It!" (2nd ed., ch. 5) and M. Fowler, "CircuitBreaker" (2014).
``now`` is monotonic seconds, injected so tests control time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from relaygate.config.schema import BreakerConfig

__all__ = ["BreakerBook", "BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    config: BreakerConfig
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probes: int = 0

    def allow(self, now: float) -> bool:
        """May a request go to this deployment now? Takes a probe slot when half-open."""
        if self.state is BreakerState.OPEN:
            if now - self.opened_at < self.config.cooldown_s:
                return False
            self.state, self.probes = BreakerState.HALF_OPEN, 0
        if self.state is BreakerState.HALF_OPEN:
            if self.probes >= self.config.half_open_requests:
                return False
            self.probes += 1
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.config.cooldown_s - (now - self.opened_at))

    def on_success(self) -> None:
        self.state, self.failures, self.probes = BreakerState.CLOSED, 0, 0

    def on_failure(self, now: float) -> None:
        if self.state is BreakerState.OPEN:
            return  # a late failure from before it opened must not extend the cooldown
        if self.state is BreakerState.HALF_OPEN:
            self._open(now)
            return
        self.failures += 1
        if self.failures >= self.config.failure_threshold:
            self._open(now)

    def on_neutral(self) -> None:
        """An outcome that says nothing about health (e.g. the client's own 400): frees a probe."""
        if self.state is BreakerState.HALF_OPEN and self.probes > 0:
            self.probes -= 1

    def apply_remote_open(self, now: float, remaining_s: float) -> bool:
        """Another replica opened this deployment's breaker, with ``remaining_s`` of cooldown
        left: stay open at least that long (a longer local cooldown is kept). Failure counts are
        left alone. Returns whether anything changed."""
        if remaining_s <= 0 or self.retry_after(now) >= remaining_s:
            return False
        # opened_at chosen so that retry_after(now) == remaining_s under this config.
        self.state, self.probes = BreakerState.OPEN, 0
        self.opened_at = now - self.config.cooldown_s + remaining_s
        return True

    def _open(self, now: float) -> None:
        self.state, self.opened_at, self.probes = BreakerState.OPEN, now, 0


class BreakerBook:
    """All breakers of one gateway process, created on first use per deployment id."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self._by_id: dict[str, CircuitBreaker] = {}

    def get(self, deployment_id: str) -> CircuitBreaker:
        br = self._by_id.get(deployment_id)
        if br is None:
            br = self._by_id[deployment_id] = CircuitBreaker(self.config)
        return br

    def adopt(self, other: BreakerBook, keep: set[str]) -> None:
        """Take over ``other``'s breakers for ids in ``keep``, under this book's config."""
        for did, br in other._by_id.items():
            if did in keep:
                br.config = self.config
                self._by_id[did] = br

    def items(self) -> list[tuple[str, CircuitBreaker]]:
        return list(self._by_id.items())

    def states(self) -> dict[str, BreakerState]:
        return {k: v.state for k, v in self._by_id.items()}
