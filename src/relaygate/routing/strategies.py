"""Order a route's deployments for one request (pure given the RNG).

- ``priority``: the order in the config; the first is the primary, the rest are fallbacks.
- ``weighted``: a random permutation where each deployment comes first with probability
  proportional to its ``weight``, sampled without replacement by the Efraimidis-Spirakis
  method (key = u ** (1 / w), sort descending; Inf. Proc. Letters 97(5), 2006), so the
  remaining deployments still serve as fallbacks.
"""

from __future__ import annotations

import random

from relaygate.config.schema import DeploymentConfig, RouteConfig

__all__ = ["order_deployments"]


def order_deployments(route: RouteConfig, rng: random.Random) -> list[DeploymentConfig]:
    deps = route.deployments
    if route.strategy == "priority" or len(deps) == 1:
        return list(deps)
    keyed = [(rng.random() ** (1.0 / d.weight), i) for i, d in enumerate(deps)]
    keyed.sort(reverse=True)
    return [deps[i] for _, i in keyed]
