"""Cutoff drills: "what if provider P is cut off for region R?", from config, policy and ledger traffic.

Pure: ``relaygate drill`` reads the config, the ledger and the cutoffs in force and hands them to
``run_drill``. Prices are USD per 1M tokens. A *blended* price weighs a deployment's input and
output prices by the prompt/completion token mix of the traffic in question:
``(P * input + C * output) / (P + C)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from relaygate.config.policy_schema import DATA_CLASSES, DataClass
from relaygate.config.schema import Config, DeploymentConfig, Price
from relaygate.ledger.usage_store import TrafficSummary
from relaygate.policy import Candidate, CompiledPolicy, Exclusion, RequestFacts, decide, provider_facts
from relaygate.routing.strategies import cheapest_non_inferior

__all__ = [
    "DEFAULT_TENANT",
    "NO_ALLOWED",
    "Choice",
    "DrillReport",
    "GroupImpact",
    "IdleRoute",
    "blended_price",
    "choose",
    "run_drill",
]

NO_ALLOWED = "NO ALLOWED DEPLOYMENT"
DEFAULT_TENANT = "default"  # the tenant open auth serves; also used for ledger rows without one
ALL_REGIONS = "*"
Pair = tuple[str, str]  # (provider, REGION or "*")
_Key = tuple[str, str | None, str | None]  # (route, tenant region, data class) as in the ledger


def blended_price(price: Price, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD per 1M tokens for this token mix; None when there are no tokens."""
    total = prompt_tokens + completion_tokens
    return None if total <= 0 else _mix(price, prompt_tokens, completion_tokens) / total


@dataclass(frozen=True, slots=True)
class Choice:
    """What would serve one request shape under the drill's cutoffs.

    ``label``: a deployment id, ``"weighted among a, b"``, or None when nothing is allowed.
    ``shares``: each serving deployment with the probability that it serves first (1.0 for a
    priority route; weight / total weight of the allowed ones for a weighted route).
    ``refused_by_policy``: policy alone (no cutoffs at all) already allows nothing, so the drill
    did not cause the gap.
    """

    label: str | None
    shares: tuple[tuple[DeploymentConfig, float], ...]
    reason: str
    refused_by_policy: bool = False

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Expected ``P * input + C * output`` (USD per 1M tokens times tokens) over ``shares``."""
        return sum(s * _mix(d.price, prompt_tokens, completion_tokens) for d, s in self.shares)


_Pick = Callable[[str, str, str | None, DataClass], Choice]  # (route, tenant, region, class) -> choice


@dataclass(frozen=True, slots=True)
class GroupImpact:
    """One (route, tenant region, data class) of past traffic under the drill.

    ``affected_share`` is a fraction (0..1) of ``requests``. USD figures are per 1M tokens, over
    the affected rows' token mix (None when no affected row reported tokens). ``dangerous``: the
    cutoffs (the drill's plus those in force) leave no allowed deployment where policy alone
    would allow one.
    """

    route: str
    tenant_region: str | None
    data_class: str | None
    tenants: tuple[str, ...]
    requests: int
    affected_requests: int
    affected_share: float
    current_deployments: tuple[str, ...]
    replacement: str | None
    replacement_reason: str
    old_usd_per_1m: float | None
    new_usd_per_1m: float | None
    no_allowed_deployment: bool
    refused_by_policy: bool
    dangerous: bool

    @property
    def delta_usd_per_1m(self) -> float | None:
        if self.old_usd_per_1m is None or self.new_usd_per_1m is None:
            return None
        return self.new_usd_per_1m - self.old_usd_per_1m


@dataclass(frozen=True, slots=True)
class IdleRoute:
    """A configured route with no traffic in the window that would have no allowed deployment for
    the config's tenants of one region and default data class."""

    route: str
    tenant_region: str | None
    data_class: str
    tenants: tuple[str, ...]
    reason: str
    refused_by_policy: bool

    @property
    def dangerous(self) -> bool:
        return not self.refused_by_policy


@dataclass(frozen=True, slots=True)
class DrillReport:
    cutoffs: tuple[Pair, ...]
    active: tuple[Pair, ...]
    groups: tuple[GroupImpact, ...]
    idle: tuple[IdleRoute, ...]

    @property
    def dangerous(self) -> bool:
        """Some route/region would be left with no allowed deployment (the CLI exits 3)."""
        return any(g.dangerous for g in self.groups) or any(i.dangerous for i in self.idle)

    def to_json(self, since: datetime) -> dict[str, Any]:
        """The ``--format json`` document (stable keys; shares and USD rounded to 6 places)."""
        groups = []
        for g in self.groups:
            row = asdict(g)
            row["affected_share"] = round(g.affected_share, 6)
            row["old_usd_per_1m"] = _round(g.old_usd_per_1m)
            row["new_usd_per_1m"] = _round(g.new_usd_per_1m)
            row["delta_usd_per_1m"] = _round(g.delta_usd_per_1m)
            groups.append(row)
        return {
            "cutoffs": [f"{p}:{r}" for p, r in self.cutoffs],
            "active_cutoffs": [f"{p}:{r}" for p, r in self.active],
            "since": since.isoformat(),
            "groups": groups,
            "idle_routes": [{**asdict(i), "dangerous": i.dangerous} for i in self.idle],
            "dangerous": self.dangerous,
        }


def choose(
    config: Config,
    policy: CompiledPolicy,
    request: RequestFacts,
    cutoffs: Iterable[Pair],
    candidates: Sequence[Candidate] | None = None,
) -> Choice:
    """The deployment(s) of ``request.route`` that would serve ``request`` with ``cutoffs`` in force.

    Priority routes: the first allowed deployment in config order. Weighted routes: every allowed
    deployment, shared by weight. ``cheapest_non_inferior`` routes: the strategy's first choice
    among the allowed ones (published quality must already be merged into ``config``).
    ``candidates`` defaults to the route's, built as the gateway does.
    """
    route = config.routes[request.route]
    cands = candidates if candidates is not None else _candidates(config)[request.route]
    decision = decide(request, cands, policy, frozenset(cutoffs))
    allowed_ids = set(decision.allowed)
    allowed = [d for d in route.deployments if d.deployment_id in allowed_ids]
    if not allowed:
        refused = not decide(request, cands, policy, ()).allowed
        head = "policy allows no deployment even without cutoffs" if refused else "every deployment excluded"
        return Choice(None, (), f"{head}: {_excluded(decision.excluded)}", refused)
    if route.strategy == "weighted" and len(allowed) > 1:
        total = sum(d.weight for d in allowed)
        names = ", ".join(d.deployment_id for d in allowed)
        reason = "split by weight (" + ", ".join(f"{d.deployment_id} {d.weight:g}" for d in allowed) + ")"
        if decision.excluded:
            reason += f"; excluded {_excluded(decision.excluded)}"
        return Choice(f"weighted among {names}", tuple((d, d.weight / total) for d in allowed), reason)
    if route.strategy == "cheapest_non_inferior":
        ordering = cheapest_non_inferior(route.model_copy(update={"deployments": allowed}))
        reason = ordering.reason + (f"; excluded {_excluded(decision.excluded)}" if decision.excluded else "")
        return Choice(ordering.order[0].deployment_id, ((ordering.order[0], 1.0),), reason)
    first = allowed[0]
    ahead = {d.deployment_id for d in route.deployments[: route.deployments.index(first)]}
    skipped = [e for e in decision.excluded if e.deployment_id in ahead]
    if route.strategy == "weighted":
        reason = "only allowed deployment of the weighted route"
        skipped = list(decision.excluded)
    else:
        reason = "first allowed in priority order" if skipped else "first in priority order"
    if skipped:
        reason += f"; skipped {_excluded(skipped)}"
    return Choice(first.deployment_id, ((first, 1.0),), reason)


def run_drill(
    config: Config,
    policy: CompiledPolicy,
    traffic: Iterable[TrafficSummary],
    cutoffs: Iterable[Pair],
    *,
    active: Iterable[Pair] = (),
) -> DrillReport:
    """Impact of cutting off ``cutoffs`` on ``traffic`` (``UsageStore.traffic_by`` rows).

    A row is affected when its served provider is cut for its tenant region by one of the drill's
    pairs (``*`` cuts every region; a row without a region is hit only by ``*``). Replacements
    are decided with the drill's pairs plus ``active`` (cutoffs already in force). Old prices use
    each affected row's served deployment from the config (the ledger's ``cost_usd`` when that
    deployment is gone); new prices apply the replacement to the same token mix.
    """
    drill = _normalize(cutoffs)
    in_force = tuple(p for p in _normalize(active) if p not in drill)
    every = frozenset(drill) | frozenset(in_force)
    cands = _candidates(config)
    memo: dict[tuple[str, str, str | None, str], Choice] = {}

    def pick(route: str, tenant: str, region: str | None, data_class: DataClass) -> Choice:
        key = (route, tenant, region, data_class)
        if key not in memo:
            facts = RequestFacts(tenant, region, data_class, route)
            memo[key] = choose(config, policy, facts, every, cands[route])
        return memo[key]

    groups: dict[_Key, list[TrafficSummary]] = {}
    for row in traffic:
        region = (row["tenant_region"] or "").strip().upper() or None
        groups.setdefault((row["route"], region, row["data_class"]), []).append(row)
    impacts = [
        _impact(config, policy, key, rows, frozenset(drill), pick)
        for key, rows in sorted(groups.items(), key=lambda kv: _order(kv[0]))
    ]
    idle = _idle_routes(config, policy, {k[0] for k in groups}, pick)
    return DrillReport(drill, in_force, tuple(impacts), idle)


def _impact(
    config: Config,
    policy: CompiledPolicy,
    key: _Key,
    rows: list[TrafficSummary],
    drill: frozenset[Pair],
    pick: _Pick,
) -> GroupImpact:
    route, region, data_class = key
    requests = sum(r["requests"] for r in rows)
    hit = [r for r in rows if _is_cut(drill, r["served_provider"], region)]
    affected = sum(r["requests"] for r in hit)
    served: dict[str, int] = {}
    for r in rows:
        if r["served_deployment"] is not None:
            served[r["served_deployment"]] = served.get(r["served_deployment"], 0) + r["requests"]
    tenants = tuple(sorted({r["tenant"] or DEFAULT_TENANT for r in rows}))
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in hit)
    old = sum(_row_cost(config, route, r) for r in hit) / tokens if tokens else None
    if route in config.routes:
        choices = {t: pick(route, t, region, _data_class(config, policy, t, data_class)) for t in tenants}
        label, reason = _label(choices)
        cost = _new_cost(choices, hit) if tokens else None
        new = None if cost is None else cost / tokens
        missing = [c for c in choices.values() if c.label is None]
    else:
        label, reason, new, missing = None, "route is not in the config (requests would get 404)", None, []
    return GroupImpact(
        route=route,
        tenant_region=region,
        data_class=data_class,
        tenants=tenants,
        requests=requests,
        affected_requests=affected,
        affected_share=affected / requests if requests else 0.0,
        current_deployments=tuple(sorted(served, key=lambda d: (-served[d], d))),
        replacement=label,
        replacement_reason=reason,
        old_usd_per_1m=old,
        new_usd_per_1m=new,
        no_allowed_deployment=bool(missing),
        refused_by_policy=any(c.refused_by_policy for c in missing),
        dangerous=any(not c.refused_by_policy for c in missing),
    )


def _new_cost(choices: dict[str, Choice], hit: list[TrafficSummary]) -> float | None:
    """Expected ``P * input + C * output`` of the affected rows at their tenants' replacements;
    None when a tenant with affected tokens would have no deployment."""
    total = 0.0
    for tenant, choice in choices.items():
        mine = [r for r in hit if (r["tenant"] or DEFAULT_TENANT) == tenant]
        p, c = sum(r["prompt_tokens"] for r in mine), sum(r["completion_tokens"] for r in mine)
        if p + c and choice.label is None:
            return None
        total += choice.cost(p, c)
    return total


def _idle_routes(
    config: Config, policy: CompiledPolicy, seen: set[str], pick: _Pick
) -> tuple[IdleRoute, ...]:
    """Routes without traffic, checked for every config tenant (region, default data class) that
    may call them; open auth adds tenant ``default``, and so does a config without tenants."""
    tenants = [
        (name, tc.region or config.auth.default_region, tc.default_data_class, tc.allowed_routes)
        for name, tc in config.tenants.items()
    ]
    if DEFAULT_TENANT not in config.tenants and (config.auth.mode == "open" or not tenants):
        tenants.append((DEFAULT_TENANT, config.auth.default_region, None, None))
    broken: dict[tuple[str, str | None, str], list[tuple[str, Choice]]] = {}
    for route in config.routes:
        if route in seen:
            continue
        for name, region, default_class, allowed in tenants:
            if allowed is not None and route not in allowed:
                continue
            region = (region or "").strip().upper() or None
            data_class = default_class or policy.default_data_class
            choice = pick(route, name, region, data_class)
            if choice.label is None:
                broken.setdefault((route, region, data_class), []).append((name, choice))
    return tuple(
        IdleRoute(
            route=route,
            tenant_region=region,
            data_class=data_class,
            tenants=tuple(sorted(n for n, _ in found)),
            reason=found[0][1].reason,
            refused_by_policy=all(c.refused_by_policy for _, c in found),
        )
        for (route, region, data_class), found in broken.items()
    )


def _label(choices: dict[str, Choice]) -> tuple[str | None, str]:
    first = next(iter(choices.values()))
    if len({c.label for c in choices.values()}) == 1:
        return first.label, first.reason
    label = "; ".join(f"{t}: {c.label or NO_ALLOWED}" for t, c in choices.items())
    return label, "; ".join(f"{t}: {c.reason}" for t, c in choices.items())


def _candidates(config: Config) -> dict[str, tuple[Candidate, ...]]:
    """Per route, the policy candidates in config order, as ``runtime.build_runtime`` builds them."""
    facts = {name: provider_facts(pc) for name, pc in config.providers.items()}
    return {
        name: tuple(Candidate(d.deployment_id, d.model, d.provider, facts[d.provider]) for d in r.deployments)
        for name, r in config.routes.items()
    }


def _data_class(config: Config, policy: CompiledPolicy, tenant: str, seen: str | None) -> DataClass:
    """The ledger's class when valid, else the tenant's default, else the policy default."""
    for value in (seen, getattr(config.tenants.get(tenant), "default_data_class", None)):
        if value in DATA_CLASSES:
            return value  # type: ignore[return-value]
    return policy.default_data_class


def _row_cost(config: Config, route: str, row: TrafficSummary) -> float:
    """``P * input + C * output`` at the served deployment's configured prices (USD per 1M x tokens);
    the ledger's own cost (scaled alike) when the deployment is no longer configured."""
    dep = _deployment(config, route, row["served_deployment"])
    if dep is None:
        return row["cost_usd"] * 1_000_000
    return _mix(dep.price, row["prompt_tokens"], row["completion_tokens"])


def _deployment(config: Config, route: str, deployment_id: str | None) -> DeploymentConfig | None:
    routes = [config.routes[route]] if route in config.routes else []
    routes += [r for name, r in config.routes.items() if name != route]
    for r in routes:
        for d in r.deployments:
            if d.deployment_id == deployment_id:
                return d
    return None


def _mix(price: Price, prompt_tokens: int, completion_tokens: int) -> float:
    return prompt_tokens * price.input + completion_tokens * price.output


def _is_cut(cut: frozenset[Pair], provider: str | None, region: str | None) -> bool:
    if provider is None:
        return False
    return (provider, ALL_REGIONS) in cut or (region is not None and (provider, region) in cut)


def _normalize(pairs: Iterable[Pair]) -> tuple[Pair, ...]:
    out: list[Pair] = []
    for provider, region in pairs:
        pair = (provider, region if region == ALL_REGIONS else region.strip().upper())
        if pair not in out:
            out.append(pair)
    return tuple(out)


def _excluded(exclusions: Iterable[Exclusion]) -> str:
    return ", ".join(
        f"{e.deployment_id} ({'cut off' if e.code == 'cutoff' else f'rule {e.rule}'})" for e in exclusions
    )


def _order(key: _Key) -> tuple[str, bool, str, bool, str]:
    route, region, data_class = key
    return route, region is None, region or "", data_class is None, data_class or ""


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
