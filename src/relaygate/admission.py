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

Spend survives restarts: the usage ledger is its source of truth. ``seed_all`` (at start-up, one
query off the event loop) starts every budgeted tenant's day and month counters at the ledger's
sum of ``cost_usd`` since the UTC period start. A counter found absent later (a new period, a
tenant added by reload, Redis restarted or flushed) makes ``admit`` seed that tenant first (one
query per tenant and event, shared by the requests waiting on it), plus the reservations of this
replica's requests still in flight. Seeds are set-if-absent, so replicas seeding at once never
double count nor overwrite a live counter. Not counted: rows still in a ledger writer's queue
(``flush_interval_s``, 0.2 s by default, of the other replicas' traffic) and other replicas'
requests in flight when Redis lost the counter. If the ledger cannot be read, the counter starts
from zero (logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from relaygate.auth import Principal
from relaygate.config.schema import Config, DeploymentConfig
from relaygate.errors import BudgetExceededError, RateLimitError
from relaygate.ledger.pricing import cost_usd
from relaygate.ledger.records import UsageRecord
from relaygate.protocols.openai import ChatRequest
from relaygate.protocols.ratelimit_headers import Wire, ratelimit_headers
from relaygate.state.base import Ask, Budget, Limit, Seed, Settlement, SharedState
from relaygate.state.limits import TenantLimits, budgets_for, build_ask, limit_table
from relaygate.state.windows import period_starts

__all__ = ["Admission", "LedgerSpend", "estimate_usd"]

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


class LedgerSpend(Protocol):
    """Where budgets are seeded from: ``UsageStore`` (sync; called in a worker thread)."""

    def budget_spend(
        self, tenants: Sequence[str], day_start: datetime, month_start: datetime
    ) -> dict[str, tuple[float, float]]: ...


@dataclass(frozen=True, slots=True)
class _Grant:
    ask: Ask
    at: float


class Admission:
    """``spend``: the ledger budgets are seeded from (None: counters start at zero, as in tests
    without storage). ``clock``: epoch seconds."""

    def __init__(
        self,
        state: SharedState,
        clock: Callable[[], float] = time.time,
        *,
        spend: LedgerSpend | None = None,
    ) -> None:
        self.state = state
        self.clock = clock
        self.spend = spend
        self.pending: dict[str, _Grant] = {}  # request_id -> what to settle
        self._config: Config | None = None
        self._table: dict[str, TenantLimits] = {}
        self._seeding: dict[str, asyncio.Task[None]] = {}  # tenant -> its seed in progress

    def limits_for(self, config: Config, tenant: str) -> TenantLimits | None:
        return self._table_for(config).get(tenant)

    def _table_for(self, config: Config) -> dict[str, TenantLimits]:
        if config is not self._config:  # a new config (start, reload): rebuild the table once
            self._table, self._config = limit_table(config), config
        return self._table

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
        seed = self.spend is not None
        ask = build_ask(tl, principal.tenant, principal.key_id, request_id, now, reserve, seed_missing=seed)
        if not ask.limits and not ask.budgets:
            return {}
        verdict = await self.state.admit(ask)
        if verdict.unseeded:  # rare: a budget counter is absent; seed it from the ledger, ask again
            await self._seed_tenant(ask)
            ask = replace(ask, seed_missing=False)
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

    async def seed_all(self, config: Config) -> None:
        """Start every budgeted tenant's current day and month counters from the ledger (one
        query, in a worker thread); counters that exist are kept. Never raises."""
        if self.spend is None:
            return
        now = self.clock()
        table = self._table_for(config)
        budgeted = {t: budgets_for(tl, t, now) for t, tl in table.items() if tl.budget is not None}
        if budgeted:
            await self._seed(budgeted, now)

    async def _seed_tenant(self, ask: Ask) -> None:
        """Seed ``ask``'s budgets once, however many requests of the tenant wait on it."""
        task = self._seeding.get(ask.group)
        if task is None:
            task = asyncio.create_task(self._seed({ask.group: ask.budgets}, self.clock()))
            self._seeding[ask.group] = task
            task.add_done_callback(lambda _: self._seeding.pop(ask.group, None))
        await asyncio.shield(task)  # a cancelled request does not cancel the others' seed

    async def _seed(self, budgets: dict[str, tuple[Budget, ...]], now: float) -> None:
        assert self.spend is not None
        day, month = (datetime.fromtimestamp(t, UTC) for t in period_starts(now))
        try:
            spent = await asyncio.to_thread(self.spend.budget_spend, list(budgets), day, month)
        except Exception:  # a database outage must not fail requests: start from zero
            log.exception("reading budget spend from the ledger failed; counters start at 0")
            spent = {}
        in_flight: dict[str, float] = {}
        for grant in self.pending.values():  # admitted against a counter Redis may have lost
            for b in grant.ask.budgets:
                in_flight[b.name] = in_flight.get(b.name, 0.0) + grant.ask.reserve_usd
        items: list[Seed] = []
        for tenant, bs in budgets.items():
            usd_day, usd_month = spent.get(tenant, (0.0, 0.0))
            for b in bs:
                usd = usd_day if b.period == "day" else usd_month
                items.append((tenant, b, usd + in_flight.get(b.name, 0.0)))
        try:
            await self.state.seed(items)
        except Exception:
            log.exception("seeding budget counters failed")

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
