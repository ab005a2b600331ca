"""The failover loop: try a route's deployments in strategy order until one commits.

Per deployment: skip it while a Retry-After cooldown or an open circuit breaker says so;
otherwise attempt, and on failure ask ``retry.decide`` whether to retry it (backoff /
Retry-After), move to the next, or relay the client's own error. Context-length failures
skip later deployments whose context window is not larger. Every attempt is recorded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from relaygate.config.schema import Config, DeploymentConfig
from relaygate.errors import (
    AllCandidatesFailedError,
    ErrorClass,
    InvalidRequestError,
    RateLimitError,
    UpstreamError,
)
from relaygate.ledger.records import AttemptRecord
from relaygate.providers.base import Provider
from relaygate.routing import retry
from relaygate.routing.breaker import BreakerBook, BreakerState, CircuitBreaker
from relaygate.routing.strategies import order_deployments

__all__ = ["HealthHook", "Router", "Served"]

T = TypeVar("T")
# (kind "breaker_open" | "cooldown", deployment id, seconds it lasts): told to other replicas.
HealthHook = Callable[[str, str, float], None]
_WAIT_CLASSES = frozenset({ErrorClass.RATE_LIMITED, ErrorClass.COOLDOWN, ErrorClass.CIRCUIT_OPEN})


@dataclass(slots=True)
class Served:
    """Which deployment committed, and every attempt made (including failed ones)."""

    deployment: DeploymentConfig | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)


class Router:
    """Holds per-deployment health (breakers, cooldowns) for one gateway process.

    ``clock`` is monotonic seconds; ``rng`` drives jitter and weighted ordering.
    ``on_attempt`` (optional) is told of every attempt, for metrics. ``on_health`` (optional)
    is told when a breaker opens or a Retry-After cooldown starts here, so other replicas can
    apply it (``apply_remote``); it must not block.
    """

    def __init__(
        self,
        config: Config,
        providers: dict[str, Provider],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_attempt: Callable[[AttemptRecord], None] | None = None,
        on_health: HealthHook | None = None,
    ) -> None:
        self.config = config
        self.on_health = on_health
        self.providers = providers
        self.clock = clock
        self.rng = rng or random.Random()
        self.breakers = BreakerBook(config.breaker)
        self.cooldown_until: dict[str, float] = {}
        self._on_attempt = on_attempt

    def inherit(self, previous: Router, keep: set[str]) -> None:
        """Carry breaker and cooldown state over a config reload for deployments in ``keep``."""
        self.breakers.adopt(previous.breakers, keep)
        self.cooldown_until.update({k: v for k, v in previous.cooldown_until.items() if k in keep})

    async def run(
        self,
        route_name: str,
        served: Served,
        attempt: Callable[[Provider, DeploymentConfig], Awaitable[T]],
        *,
        candidates: list[DeploymentConfig] | None = None,
        on_region_block: Callable[[DeploymentConfig, UpstreamError], Awaitable[None]] | None = None,
    ) -> T:
        """Run ``attempt`` over the route's candidates; returns the first committed result.

        ``candidates``: the deployments policy allows (default: all of the route's), ordered
        here by the route's strategy. ``on_region_block`` is awaited when an upstream reports a
        region block, before moving on; later deployments of that provider are skipped.

        Raises ``UpstreamError`` with class ``client_error`` (relay to the client unchanged),
        ``RateLimitError`` when only waits stand in the way, else ``AllCandidatesFailedError``
        (a 400 when every cause was the request's own: unsupported input, context length).
        Failures that say nothing about a deployment's health (client errors, unsupported input,
        context length, content policy) never count toward its circuit breaker.
        """
        route = self.config.routes[route_name]
        if candidates is not None:
            route = route.model_copy(update={"deployments": candidates})
        cfg = route.retry or self.config.retry
        causes: list[tuple[str, UpstreamError]] = []
        min_context: int | None = None
        blocked: set[str] = set()
        unsupported: list[InvalidRequestError] = []
        ordered = order_deployments(route, self.rng)
        for pos, dep in enumerate(ordered):
            did = dep.deployment_id
            if dep.provider in blocked:
                causes.append(
                    (
                        did,
                        UpstreamError(
                            f"skipped: provider {dep.provider} region-blocked",
                            error_class=ErrorClass.REGION_BLOCKED,
                        ),
                    )
                )
                continue
            if min_context is not None and (dep.context_window or 0) <= min_context:
                causes.append(
                    (
                        did,
                        UpstreamError(
                            f"skipped: context window {dep.context_window} not larger than {min_context}",
                            error_class=ErrorClass.CONTEXT_LENGTH,
                        ),
                    )
                )
                continue
            skip = await self._wait_or_skip(did, cfg.max_wait_ms, has_fallback=pos + 1 < len(ordered))
            if skip is not None:
                causes.append((did, skip))
                continue
            provider = self.providers[dep.provider]
            breaker = self.breakers.get(did)
            n = 0
            while True:
                n += 1
                t0 = self.clock()
                try:
                    result = await attempt(provider, dep)
                except InvalidRequestError as bad:
                    # This deployment's wire format cannot carry the request (a translation
                    # limit, a provider preset's range): another deployment may; no upstream call.
                    self._record(served, dep, None, ErrorClass.UNSUPPORTED.value, t0)
                    breaker.on_neutral()
                    unsupported.append(bad)
                    cause = UpstreamError(
                        f"cannot serve this request: {bad.message}", error_class=ErrorClass.UNSUPPORTED
                    )
                    cause.param = bad.param
                    causes.append((did, cause))
                    break
                except UpstreamError as err:
                    self._record(served, dep, err.upstream_status, err.error_class.value, t0)
                    if retry.counts_against_breaker(err.error_class):
                        self._failed(breaker, did)
                    else:  # the request's own fault (400, unsupported input, too long): health unknown
                        breaker.on_neutral()
                    if err.retry_after_s:
                        self.cooldown_until[did] = max(
                            self.cooldown_until.get(did, 0.0), self.clock() + err.retry_after_s
                        )
                        if self.on_health is not None:
                            self.on_health("cooldown", did, err.retry_after_s)
                    decision = retry.decide(err, n, cfg, self.rng)
                    if decision.action is retry.Action.RELAY:
                        served.deployment = dep  # the answer the client gets came from here
                        raise
                    if decision.action is retry.Action.RETRY and breaker.allow(self.clock()):
                        await asyncio.sleep(decision.delay_s)
                        continue
                    causes.append((did, err))
                    if err.error_class is ErrorClass.REGION_BLOCKED:
                        blocked.add(dep.provider)
                        if on_region_block is not None:
                            await on_region_block(dep, err)
                    if err.error_class is ErrorClass.CONTEXT_LENGTH and dep.context_window:
                        min_context = max(min_context or 0, dep.context_window)
                    break
                except asyncio.CancelledError:
                    self._record(served, dep, None, "cancelled", t0)
                    breaker.on_neutral()
                    raise
                self._record(served, dep, 200, None, t0)
                breaker.on_success()
                served.deployment = dep
                return result
        if unsupported and len(unsupported) == len(causes):
            raise unsupported[0]  # nobody could take it: the client's 400, naming the field
        raise self._exhausted(route_name, causes)

    def _failed(self, breaker: CircuitBreaker, did: str) -> None:
        was_open = breaker.state is BreakerState.OPEN
        now = self.clock()
        breaker.on_failure(now)
        if not was_open and breaker.state is BreakerState.OPEN and self.on_health is not None:
            self.on_health("breaker_open", did, breaker.retry_after(now))

    def apply_remote(self, kind: str, did: str, remaining_s: float) -> bool:
        """Apply another replica's breaker opening or cooldown (``remaining_s`` left) here,
        without telling anyone. Returns whether local state changed."""
        now = self.clock()
        if kind == "breaker_open":
            return self.breakers.get(did).apply_remote_open(now, remaining_s)
        if kind == "cooldown" and now + remaining_s > self.cooldown_until.get(did, 0.0):
            self.cooldown_until[did] = now + remaining_s
            return True
        return False

    async def _wait_or_skip(self, did: str, max_wait_ms: int, *, has_fallback: bool) -> UpstreamError | None:
        """Return a cause when the deployment must be skipped now. A deployment cooling down
        after Retry-After is skipped while another candidate remains; as the last candidate
        it is waited for when the wait fits ``max_wait_ms``."""
        now = self.clock()
        wait = self.cooldown_until.get(did, 0.0) - now
        if wait > 0:
            if has_fallback or wait * 1000 > max_wait_ms:
                return UpstreamError(
                    f"skipped: cooling down for {wait:.1f}s after Retry-After",
                    error_class=ErrorClass.COOLDOWN,
                    retry_after_s=wait,
                )
            await asyncio.sleep(wait)
            now = self.clock()
        breaker = self.breakers.get(did)
        if not breaker.allow(now):
            left = breaker.retry_after(now)
            return UpstreamError(
                f"skipped: circuit breaker open ({left:.1f}s left)",
                error_class=ErrorClass.CIRCUIT_OPEN,
                retry_after_s=left or None,
            )
        return None

    def _record(
        self, served: Served, dep: DeploymentConfig, status: int | None, cls: str | None, t0: float
    ) -> None:
        rec = AttemptRecord(dep.deployment_id, dep.provider, status, cls, (self.clock() - t0) * 1000)
        served.attempts.append(rec)
        if self._on_attempt is not None:
            self._on_attempt(rec)

    @staticmethod
    def _exhausted(route_name: str, causes: list[tuple[str, UpstreamError]]) -> Exception:
        if (
            causes
            and all(e.error_class in _WAIT_CLASSES for _, e in causes)
            and any(e.error_class is not ErrorClass.CIRCUIT_OPEN for _, e in causes)
        ):
            waits = [e.retry_after_s for _, e in causes if e.retry_after_s]
            return RateLimitError(
                f"All deployments for model '{route_name}' are rate limited; retry later.",
                retry_after_s=min(waits) if waits else 1.0,
            )
        err = AllCandidatesFailedError(route_name, causes)
        waits = [e.retry_after_s for _, e in causes if e.retry_after_s]
        if err.status == 503 and waits:
            err.headers["retry-after"] = str(max(1, round(min(waits))))
        return err
