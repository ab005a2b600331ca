"""Order a route's deployments for one request (pure given the RNG).

- ``priority``: the order in the config; the first is the primary, the rest are fallbacks.
- ``weighted``: a random permutation where each deployment comes first with probability
  proportional to its ``weight``, sampled without replacement by the Efraimidis-Spirakis
  method (key = u ** (1 / w), sort descending; Inf. Proc. Letters 97(5), 2006), so the
  remaining deployments still serve as fallbacks.
- ``cheapest_non_inferior``: first the cheapest deployment whose published eval quality
  (``DeploymentConfig.quality``, see ``relaygate.config.quality_schema``) is non-inferior to the
  route's incumbent (``RouteConfig.incumbent``, default the first deployment); then the
  incumbent; then the others in config order. Deterministic (no RNG).

  *Eligible*: the incumbent itself, and every deployment with published quality against that
  same incumbent whose verdict is PASS for every suite in ``RouteConfig.quality_suites`` (None:
  at least one published suite, and every published suite PASS). Fail closed: no quality, a
  verdict against another incumbent, FAIL or INCONCLUSIVE make a deployment ineligible to lead,
  but it stays a fallback. *Cheapest*: the lowest blended price ``(3 * input + output) / 4`` in
  USD per 1M tokens, i.e. a 3:1 input:output token mix (the convention of Artificial Analysis'
  "blended price", https://artificialanalysis.ai/methodology); ties go to the incumbent, then
  to config order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from relaygate.config.schema import DeploymentConfig, Price, RouteConfig

__all__ = ["Ordering", "blended_price", "cheapest_non_inferior", "order_deployments", "routing_reason"]

INPUT_WEIGHT, OUTPUT_WEIGHT = 3.0, 1.0  # the blend of ``blended_price``


def order_deployments(route: RouteConfig, rng: random.Random) -> list[DeploymentConfig]:
    deps = route.deployments
    if route.strategy == "cheapest_non_inferior":
        return list(cheapest_non_inferior(route).order)
    if route.strategy == "priority" or len(deps) == 1:
        return list(deps)
    keyed = [(rng.random() ** (1.0 / d.weight), i) for i, d in enumerate(deps)]
    keyed.sort(reverse=True)
    return [deps[i] for _, i in keyed]


def routing_reason(route: RouteConfig, candidates: Sequence[DeploymentConfig]) -> str | None:
    """Why the strategy will put its first deployment first when ``candidates`` (the ones policy
    allows, config order) are ordered as the router does; None when there are none or the
    strategy needs no explanation (``priority``: config order; ``weighted``: chance)."""
    if route.strategy != "cheapest_non_inferior" or not candidates:
        return None
    return cheapest_non_inferior(route.model_copy(update={"deployments": list(candidates)})).reason


def blended_price(price: Price) -> float:
    """USD per 1M tokens at a 3:1 input:output mix: ``(3 * input + output) / 4``."""
    return (INPUT_WEIGHT * price.input + OUTPUT_WEIGHT * price.output) / (INPUT_WEIGHT + OUTPUT_WEIGHT)


@dataclass(frozen=True, slots=True)
class Ordering:
    """``order``: every deployment of the route, the chosen one first. ``reason``: one
    header-safe line naming the choice and what kept cheaper deployments out."""

    order: tuple[DeploymentConfig, ...]
    chosen: str | None
    reason: str


def _ineligible(dep: DeploymentConfig, incumbent: str, suites: list[str] | None) -> str | None:
    """Why ``dep`` may not lead (None: it may), from its published quality."""
    if dep.deployment_id == incumbent:
        return None
    scores = {s: q for s, q in dep.quality.items() if q.incumbent == incumbent}
    wanted = suites if suites is not None else sorted(scores)
    if not wanted:
        other = sorted({q.incumbent for q in dep.quality.values()})
        return f"quality only vs {', '.join(other)}" if other else "no published quality"
    for suite in wanted:
        q = scores.get(suite)
        if q is None:
            return f"no published quality on {suite}"
        if q.verdict != "PASS":
            return f"{q.verdict} on {suite}"
    return None


def cheapest_non_inferior(route: RouteConfig) -> Ordering:
    """The ``cheapest_non_inferior`` order of ``route.deployments`` (see the module docstring).

    ``route`` may be a policy-filtered copy: the incumbent need not be among its deployments
    (its published evidence still stands); when nothing is eligible the config order stays."""
    deps = list(route.deployments)
    incumbent = route.incumbent or deps[0].deployment_id
    why = {d.deployment_id: _ineligible(d, incumbent, route.quality_suites) for d in deps}
    eligible = [(blended_price(d.price), d.deployment_id != incumbent, i) for i, d in enumerate(deps)]
    eligible = [k for k in eligible if why[deps[k[2]].deployment_id] is None]
    if not eligible:
        return Ordering(
            tuple(deps),
            None,
            f"cheapest_non_inferior: incumbent {incumbent} not allowed and no deployment published "
            "as non-inferior to it; config order",
        )
    price, _, best = min(eligible)
    chosen = deps[best]
    rest = [d for d in deps if d is not chosen]
    rest.sort(key=lambda d: d.deployment_id != incumbent)  # stable: incumbent next, then config order
    cheaper = [
        f"{d.deployment_id} ({why[d.deployment_id]})"
        for d in deps
        if why[d.deployment_id] is not None and blended_price(d.price) < price
    ]
    if chosen.deployment_id == incumbent:
        reason = f"cheapest_non_inferior: incumbent {incumbent} at {price:.4g} USD/1M (3:1 blend)"
    else:
        suites = ",".join(
            s for s, q in sorted(chosen.quality.items()) if q.incumbent == incumbent and q.verdict == "PASS"
        )
        reason = (
            f"cheapest_non_inferior: {chosen.deployment_id} at {price:.4g} USD/1M (3:1 blend), "
            f"non-inferior to {incumbent} on {suites}"
        )
    if cheaper:
        reason += "; cheaper but not eligible: " + ", ".join(cheaper)
    return Ordering((chosen, *rest), chosen.deployment_id, reason)
