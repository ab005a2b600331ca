"""One eval request through relaygate's own gateway, in process, as a client request would go.

``call_route`` runs ``parse_chat_request`` -> ``Gateway.plan`` (data class, PII, policy) ->
``Gateway.complete`` (strategy, retries, failover) and writes one usage-ledger row, so evals see
the same policy and failover as client traffic. The rest classifies what came back: the answer
text, and whether an error is a rate limit (wait and retry) or transient (retry with backoff).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from relaygate.auth import Principal
from relaygate.config.schema import Config
from relaygate.errors import (
    AllCandidatesFailedError,
    ErrorClass,
    GatewayError,
    RateLimitError,
    UpstreamError,
)
from relaygate.ledger.records import UsageRecord, new_request_id
from relaygate.pipeline import Gateway, Plan, PolicyDeniedError
from relaygate.protocols.openai import parse_chat_request
from relaygate.routing.router import Served

__all__ = [
    "EVAL_TENANT",
    "CallOutcome",
    "call_route",
    "eval_principal",
    "is_transient",
    "output_text",
    "rate_limit_wait",
]

EVAL_TENANT = "evals"
_WAIT_CLASSES = frozenset({ErrorClass.RATE_LIMITED, ErrorClass.COOLDOWN})


@dataclass(slots=True)
class CallOutcome:
    """One answered request: the ``chat.completion`` object, the deployment that served it,
    wall time (ms), tokens and cost (USD, from the deployment's prices)."""

    response: dict[str, Any]
    served_by: str | None
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None


def eval_principal(config: Config, tenant: str = EVAL_TENANT, region: str | None = None) -> Principal:
    """The caller the evals act as: ``tenant`` (default ``evals``) with its configured region and
    allowed routes when the config declares it, else ``region`` / ``auth.default_region``."""
    tc = config.tenants.get(tenant)
    allowed = frozenset(tc.allowed_routes) if tc is not None and tc.allowed_routes is not None else None
    region = region or (tc.region if tc is not None else None) or config.auth.default_region
    return Principal(tenant, region, None, allowed)


async def call_route(
    gateway: Gateway,
    principal: Principal,
    route: str,
    body: dict[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    endpoint: str = "eval",
    bill_to: str | None = None,
) -> CallOutcome:
    """Send ``body`` (an OpenAI chat body; ``model`` is set to ``route``, ``stream`` to false) as
    ``principal`` through policy, failover and the ledger: one usage row with ``endpoint`` and
    tenant ``bill_to`` (default: the principal's tenant; replay bills its re-sends to ``evals``
    while policy still sees the captured tenant). ``headers``: e.g. the data-class header.

    Raises the gateway's errors: ``InvalidRequestError``, ``NotFoundError``,
    ``PermissionDeniedError`` / ``PolicyDeniedError``, ``RateLimitError``, ``UpstreamError``,
    ``AllCandidatesFailedError``.
    """
    rt = gateway.runtime
    t0 = time.monotonic()
    rec = UsageRecord(
        request_id=new_request_id("req_eval_"),
        ts=datetime.now(UTC),
        endpoint=endpoint,
        status=0,
        tenant=bill_to or principal.tenant,
        tenant_region=principal.region,
        route=route,
    )
    served = Served()
    plan: Plan | None = None
    try:
        req = parse_chat_request(orjson.dumps({**body, "model": route, "stream": False}))
        rt.resolve_route(principal, route)
        try:
            plan = gateway.plan(rt, principal, req, headers or {})
        except PolicyDeniedError as denied:
            plan = denied.plan
            raise
        finally:
            if plan is not None:
                rec.data_class, rec.pii_entities = plan.data_class, sorted(plan.pii) or None
                rec.policy = {**plan.decision.to_dict(), "data_class_source": plan.data_class_source}
                if plan.routing:
                    rec.policy["routing"] = plan.routing
        comp = await gateway.complete(rt, plan, req, served)
        gateway.account(rec, served, comp.usage)
        rec.status, rec.finish_reason = 200, comp.finish_reason
        response = orjson.loads(comp.body)
    except UpstreamError as err:
        gateway.account(rec, served, None)
        rec.status, rec.error_code = err.upstream_status or 502, err.error_class.value
        raise
    except GatewayError as err:
        gateway.account(rec, served, None)
        rec.status, rec.error_code = err.status, err.code
        raise
    except BaseException:
        rec.status, rec.error_code = 499, "cancelled"
        raise
    finally:
        rec.latency_ms = (time.monotonic() - t0) * 1000
        await gateway.record(rec)
    dep = served.deployment
    return CallOutcome(
        response,
        dep.deployment_id if dep is not None else None,
        rec.latency_ms,
        rec.prompt_tokens,
        rec.completion_tokens,
        rec.cost_usd,
    )


def output_text(response: Mapping[str, Any] | None) -> str | None:
    """The first choice's text, or its tool calls as JSON; None when there is neither."""
    try:
        message = response["choices"][0]["message"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(message, dict):
        return None
    if message.get("tool_calls"):
        return orjson.dumps(message["tool_calls"]).decode()
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else None


def rate_limit_wait(exc: BaseException) -> float | None:
    """Seconds to pause a target after ``exc`` when it is a rate limit, else None."""
    if isinstance(exc, RateLimitError):
        return exc.retry_after_s or 1.0
    if isinstance(exc, UpstreamError) and exc.error_class is ErrorClass.RATE_LIMITED:
        return exc.retry_after_s or 1.0
    if isinstance(exc, AllCandidatesFailedError) and exc.causes:
        if all(e.error_class in _WAIT_CLASSES for _, e in exc.causes):
            waits = [e.retry_after_s for _, e in exc.causes if e.retry_after_s]
            return min(waits) if waits else 1.0
    return None


def is_transient(exc: BaseException) -> bool:
    """True when the same request may succeed shortly (5xx, timeout, connection, all unavailable)."""
    if isinstance(exc, AllCandidatesFailedError):
        return exc.status == 503
    if isinstance(exc, UpstreamError):
        return exc.retryable or exc.error_class in (ErrorClass.TIMEOUT, ErrorClass.CONNECTION)
    return False
