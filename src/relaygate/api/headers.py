"""The ``x-relaygate-*`` decision headers every answer carries, whatever its wire format."""

from __future__ import annotations

from relaygate.ledger.records import UsageRecord
from relaygate.pipeline import Plan
from relaygate.routing.router import Served

__all__ = ["decision_headers"]


def decision_headers(
    rec: UsageRecord, served: Served | None = None, plan: Plan | None = None
) -> dict[str, str]:
    """``x-request-id``, the deployment and provider that answered, the number of attempts, the
    data class, (when something was excluded) the policy reason code, and (for a strategy that
    explains itself) the routing reason."""
    h = {"x-request-id": rec.request_id}
    if served is not None:
        h["x-relaygate-attempts"] = str(len(served.attempts))
        if served.deployment is not None:
            h["x-relaygate-deployment"] = served.deployment.deployment_id
            h["x-relaygate-provider"] = served.deployment.provider
    if plan is not None:
        h["x-relaygate-data-class"] = plan.data_class
        if plan.decision.excluded:
            h["x-relaygate-policy"] = plan.decision.reason_code
        if plan.routing:  # the strategy's reason (cheapest_non_inferior); headers are latin-1
            h["x-relaygate-routing"] = plan.routing.encode("ascii", "replace").decode()
    return h
