"""Which rate limits and budgets apply to a request: a table built once per config (pure).

Per tenant: ``limits`` (all its keys together), ``key_limits`` (each key, config or database),
a config-declared key's own ``limits`` (overriding ``key_limits``) and ``budget``. Tenants with
none of these are absent from the table, so the hot path for them is one dict lookup.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from relaygate.config.schema import Config
from relaygate.config.state_schema import BudgetConfig, RateLimits
from relaygate.state.base import Ask, Budget, Limit
from relaygate.state.windows import budget_periods

__all__ = ["TenantLimits", "budgets_for", "build_ask", "limit_table"]


@dataclass(frozen=True, slots=True)
class TenantLimits:
    tenant: RateLimits | None = None
    key_default: RateLimits | None = None
    key_overrides: Mapping[str, RateLimits] = field(default_factory=dict)  # key_id -> limits
    budget: BudgetConfig | None = None


def _some(rl: RateLimits | None) -> RateLimits | None:
    return rl if rl is not None and not rl.empty else None


def limit_table(config: Config, env: Mapping[str, str] | None = None) -> dict[str, TenantLimits]:
    """tenant -> its limits, for tenants that have any. A config key's id is ``cfg_`` + the
    first 8 hex digits of its sha256 (as ``relaygate.auth`` names it); ``env`` resolves ``key_env``."""
    env = os.environ if env is None else env
    table: dict[str, TenantLimits] = {}
    for name, t in config.tenants.items():
        overrides: dict[str, RateLimits] = {}
        for ref in t.keys:
            if ref.limits is None:
                continue
            digest = ref.key_sha256
            if ref.key_env and env.get(ref.key_env):
                digest = hashlib.sha256(env[ref.key_env].encode()).hexdigest()
            if digest:
                overrides[f"cfg_{digest[:8]}"] = ref.limits
        budget = t.budget if t.budget and (t.budget.usd_per_day or t.budget.usd_per_month) else None
        tl = TenantLimits(_some(t.limits), _some(t.key_limits), overrides, budget)
        if tl.tenant or tl.key_default or overrides or budget:
            table[name] = tl
    return table


def _limits(prefix: str, rl: RateLimits | None, scope: str) -> list[Limit]:
    if rl is None:
        return []
    out = []
    if rl.requests_per_minute is not None:
        out.append(Limit(f"{prefix}:requests", "requests", rl.requests_per_minute, scope))  # type: ignore[arg-type]
    if rl.tokens_per_minute is not None:
        out.append(Limit(f"{prefix}:tokens", "tokens", rl.tokens_per_minute, scope))  # type: ignore[arg-type]
    return out


def budgets_for(tl: TenantLimits, tenant: str, now: float) -> tuple[Budget, ...]:
    """The day and month budgets of ``tenant`` in force at ``now`` (epoch seconds), e.g.
    ``t:acme:usd:day:2026-11-29``; empty without a budget."""
    if tl.budget is None:
        return ()
    budgets: list[Budget] = []
    (day, day_end), (month, month_end) = budget_periods(now)
    if tl.budget.usd_per_day is not None:
        budgets.append(Budget(f"t:{tenant}:usd:day:{day}", tl.budget.usd_per_day, "day", day_end))
    if tl.budget.usd_per_month is not None:
        budgets.append(Budget(f"t:{tenant}:usd:month:{month}", tl.budget.usd_per_month, "month", month_end))
    return tuple(budgets)


def build_ask(
    tl: TenantLimits,
    tenant: str,
    key_id: str | None,
    request_id: str,
    now: float,
    reserve_usd: float,
    *,
    seed_missing: bool = False,
) -> Ask:
    """The ``Ask`` for one request: key limits first (the tighter, usually), then the tenant's,
    then the day and month budgets. ``now``: epoch seconds; a request without a key (open
    auth) has no key limits. ``seed_missing``: see ``Ask``."""
    limits: list[Limit] = []
    if key_id is not None:
        limits += _limits(f"k:{key_id}", tl.key_overrides.get(key_id, tl.key_default), "key")
    limits += _limits(f"t:{tenant}", tl.tenant, "tenant")
    budgets = budgets_for(tl, tenant, now)
    return Ask(
        request_id,
        tenant,
        tuple(limits),
        budgets,
        reserve_usd if budgets else 0.0,
        seed_missing and bool(budgets),
    )
