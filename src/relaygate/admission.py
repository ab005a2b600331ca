"""Rate limits and budgets of one gateway: admit a request before routing, settle it after.

``limits_for`` is the hot-path gate: one dict lookup, and ``None`` (nothing to do, no await,
no allocation) for a tenant without limits or budget. Otherwise ``admit`` asks the shared state
to check and record every limit atomically and raises ``RateLimitError`` /
``BudgetExceededError`` (429, with the wire's rate-limit headers) when one refuses; the
pipeline calls ``settle`` with the finished ledger row (success, failure, or a stream's end).

Budget estimate (reserved before the call, replaced by the real cost at settle): prompt tokens
~ request body bytes / 3 (JSON framing included: an overestimate for most text, roughly right
for CJK) and completion tokens = the request's ``max_completion_tokens`` / ``max_tokens``, else
the tenant's ``budget.default_max_tokens``, both priced at the most expensive deployment policy
allows for the request (``ledger.pricing.cost_usd``, USD per 1M tokens). A request is refused
while the period's settled + reserved spend is at or above the limit, so a budget is overspent by
at most the last admitted request's cost beyond its estimate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from relaygate.api.auth import Principal
from relaygate.api.ratelimit_headers import Wire, ratelimit_headers
from relaygate.config.schema import Config, DeploymentConfig
from relaygate.errors import BudgetExceededError, RateLimitError
from relaygate.ledger.pricing import cost_usd
from relaygate.ledger.records import UsageRecord
from relaygate.protocols.openai import ChatRequest
from relaygate.state.base import Ask, Budget, Limit, Settlement, SharedState
from relaygate.state.limits import TenantLimits, build_ask, limit_table

__all__ = ["Admission", "estimate_usd"]

log = logging.getLogger("relaygate.limits")
_MAX_PENDING = 100_000  # grants never settled (should not happen) are dropped past this


def estimate_usd(candidates: list[DeploymentConfig], req: ChatRequest, default_max_tokens: int) -> float:
    """The reservation for one request in USD (see the module docstring for the rule)."""
    data = req.data or {}
    completion = data.get("max_completion_tokens") or data.get("max_tokens") or default_max_tokens
    if not isinstance(completion, int) or completion < 0:
        completion = default_max_tokens
    prompt = len(req.body) // 3 + 1
    return max((cost_usd(d.price, prompt, completion) or 0.0 for d in candidates), default=0.0)


@dataclass(frozen=True, slots=True)
class _Grant:
    ask: Ask
    at: float


class Admission:
    def __init__(self, state: SharedState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock
        self.pending: dict[str, _Grant] = {}  # request_id -> what to settle
        self._config: Config | None = None
        self._table: dict[str, TenantLimits] = {}

    def limits_for(self, config: Config, tenant: str) -> TenantLimits | None:
        if config is not self._config:  # a new config (start, reload): rebuild the table once
            self._table, self._config = limit_table(config), config
        return self._table.get(tenant)

    async def admit(
        self,
        tl: TenantLimits,
        principal: Principal,
        req: ChatRequest,
        candidates: list[DeploymentConfig],
        request_id: str,
        wire: Wire,
    ) -> dict[str, str]:
        """Check and record ``principal``'s limits for this request; returns the rate-limit
        headers for the answer. Raises ``RateLimitError`` or ``BudgetExceededError`` (with those
        headers and ``retry-after``); never raises for a shared-state outage (local fallback)."""
        now = self.clock()
        reserve = estimate_usd(candidates, req, tl.budget.default_max_tokens) if tl.budget else 0.0
        ask = build_ask(tl, principal.tenant, principal.key_id, request_id, now, reserve)
        if not ask.limits and not ask.budgets:
            return {}
        verdict = await self.state.admit(ask)
        headers = ratelimit_headers(wire, ask, verdict, now)
        if verdict.ok:
            if len(self.pending) >= _MAX_PENDING:
                self.pending.pop(next(iter(self.pending)))
            self.pending[request_id] = _Grant(ask, now)
            return headers
        denied = verdict.denied
        if isinstance(denied, Budget):
            raise BudgetExceededError(
                f"Tenant '{principal.tenant}' has spent its budget of {denied.limit_usd:g} USD per "
                f"{denied.period} (UTC); it resets in {verdict.retry_after_s:.0f} s.",
                retry_after_s=verdict.retry_after_s,
                headers=headers,
            )
        assert isinstance(denied, Limit)
        who = f"key '{principal.key_id}'" if denied.scope == "key" else f"tenant '{principal.tenant}'"
        raise RateLimitError(
            f"Rate limit reached for {who}: {denied.limit} {denied.kind} per minute. "
            f"Retry after {verdict.retry_after_s:.1f} s.",
            retry_after_s=verdict.retry_after_s,
            headers=headers,
        )

    async def settle(self, rec: UsageRecord) -> None:
        """Charge real tokens and replace the reservation by the real cost (0 when nothing was
        served); a no-op for requests that were not admitted here."""
        grant = self.pending.pop(rec.request_id, None)
        if grant is None:
            return
        ask = grant.ask
        token_limits = tuple(lim for lim in ask.limits if lim.kind == "tokens")
        tokens = (rec.prompt_tokens or 0) + (rec.completion_tokens or 0) if token_limits else 0
        delta = (rec.cost_usd or 0.0) - ask.reserve_usd if ask.budgets else 0.0
        if tokens or delta:
            await self.state.settle(Settlement(ask.group, token_limits, tokens, ask.budgets, delta))
