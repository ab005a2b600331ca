"""OpenAI-compatible HTTP endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Every chat request, accepted or not, produces exactly one ledger row. Responses carry
``x-request-id``, ``x-relaygate-deployment``, ``x-relaygate-provider`` and
``x-relaygate-attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from relaygate.api.cache_relay import cache_lookup, cache_store, cache_tap, openai_hit
from relaygate.api.error_render import openai_error_body, openai_error_event
from relaygate.api.headers import decision_headers
from relaygate.api.stream_relay import finalizer, upstream_batches
from relaygate.api.streaming import SSEResponse
from relaygate.cache.service import Lookup
from relaygate.durations import parse_duration
from relaygate.errors import (
    AuthenticationError,
    ErrorClass,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RequestTooLargeError,
    UpstreamError,
)
from relaygate.ledger.records import UsageRecord, new_request_id
from relaygate.pipeline import Gateway, Plan, PolicyDeniedError
from relaygate.protocols.openai import ChatRequest, parse_chat_request
from relaygate.protocols.openai_stream import ChunkKind
from relaygate.routing.attempts import OpenedStream
from relaygate.routing.router import Served

__all__ = ["chat_completions", "list_models", "read_body", "tenant_usage"]

_JSON = "application/json"
log = logging.getLogger("relaygate.api")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or ``RequestTooLargeError`` (413) past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(
            f"Request body of {int(declared)} bytes exceeds the limit of {limit} bytes."
        )
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(f"Request body exceeds the limit of {limit} bytes.")
            parts.append(chunk)
    except ClientDisconnect as exc:
        raise InvalidRequestError(
            "client disconnected while sending the body", code="client_disconnected"
        ) from exc
    return b"".join(parts)


_headers = decision_headers


async def chat_completions(request: Request) -> Response | SSEResponse:
    gw: Gateway = request.app.state.gateway
    rt = gw.runtime  # one config for the whole request, even across a hot reload
    t0 = time.monotonic()
    rec = UsageRecord(
        request_id=new_request_id(),
        ts=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        status=0,
    )
    served = Served()
    plan: Plan | None = None
    try:
        principal = await rt.auth.authenticate(request.headers.get("authorization"))
        rec.tenant, rec.key_id, rec.tenant_region = principal.tenant, principal.key_id, principal.region
        req = parse_chat_request(await read_body(request, rt.max_body_bytes))
        rec.stream = req.stream
        rec.route = req.model
        rt.resolve_route(principal, req.model)
        try:
            plan = gw.plan(rt, principal, req, request.headers)
        except PolicyDeniedError as denied:
            plan = denied.plan
            raise
        finally:
            if plan is not None:
                rec.data_class, rec.pii_entities = plan.data_class, sorted(plan.pii) or None
                rec.policy = {**plan.decision.to_dict(), "data_class_source": plan.data_class_source}
                if plan.routing:
                    rec.policy["routing"] = plan.routing
        limits = gw.admission.limits_for(rt.config, principal.tenant)
        rl: dict[str, str] = {}  # rate-limit headers, on every answer as OpenAI sends them
        if limits is not None:  # rate limits and budget: a 429 before any cache or upstream work
            rl = await gw.admission.admit(limits, principal, req, plan.candidates, rec.request_id, "openai")
        cache_control = request.headers.get("cache-control")  # no-cache / no-store bypass the cache
        look = await cache_lookup(gw, principal.tenant, req, plan, rec, cache_control)  # after policy
        if look.hit:
            return openai_hit(gw, rec, req, look, {**_headers(rec, served, plan), **rl}, t0)
        if req.stream:
            opened = await gw.open_stream(rt, plan, req, served)
            return _stream_response(gw, req, rec, served, opened, t0, plan, look, rl)
        comp = await gw.complete(rt, plan, req, served)
        gw.account(rec, served, comp.usage)
        rec.status, rec.finish_reason = 200, comp.finish_reason
        if gw.payloads is not None:  # opt-in payload capture (queued, off the request path)
            await gw.capture(rt.config, rec, req, comp.body)
        cache_store(gw, look, comp.body, served)
        headers = {**_headers(rec, served, plan), **look.headers(), **rl}
        return Response(comp.body, 200, headers, media_type=_JSON)
    except UpstreamError as err:
        gw.account(rec, served, None)
        rec.status, rec.error_code = err.upstream_status or 502, err.error_class.value
        if err.error_class is ErrorClass.CLIENT_ERROR and err.upstream_status and err.upstream_body:
            # The client's own error: relayed unchanged (status and body), never failed over.
            return Response(
                err.upstream_body, err.upstream_status, _headers(rec, served, plan), media_type=_JSON
            )
        return _error(rec, served, err, plan)
    except GatewayError as err:
        gw.account(rec, served, None)
        rec.status, rec.error_code = err.status, err.code
        return _error(rec, served, err, plan)
    except Exception:  # a bug: still one ledger row and an OpenAI-shaped 500, never a traceback
        log.exception("unhandled error in %s", rec.request_id)
        gw.account(rec, served, None)
        rec.status, rec.error_code = 500, "internal_error"
        msg = f"The gateway hit an internal error; see its log for {rec.request_id}."
        return _error(rec, served, GatewayError(msg, code="internal_error"), plan)
    finally:
        if rec.status and not (rec.stream and rec.status == 200):
            rec.latency_ms = (time.monotonic() - t0) * 1000
            await gw.record(rec)


def _error(rec: UsageRecord, served: Served, err: GatewayError, plan: Plan | None = None) -> Response:
    return Response(
        openai_error_body(err), err.status, {**_headers(rec, served, plan), **err.headers}, media_type=_JSON
    )


def _stream_response(
    gw: Gateway,
    req: ChatRequest,
    rec: UsageRecord,
    served: Served,
    opened: OpenedStream,
    t0: float,
    plan: Plan,
    look: Lookup,
    rl: dict[str, str],
) -> SSEResponse:
    finalize = finalizer(gw, rec, served, opened, t0, req)

    async def body() -> AsyncGenerator[bytes, None]:
        strip_usage = not req.include_usage  # the gateway asked for usage; the client did not
        try:
            async for batch in cache_tap(upstream_batches(opened), gw, look, served):
                out = b"".join(ev.raw for ev, kind in batch if not (strip_usage and kind is ChunkKind.USAGE))
                if out:
                    yield out
            if not opened.watch.done:
                yield b"data: [DONE]\n\n"  # finish_reason came, the terminator did not
        except UpstreamError as err:
            rec.error_code = err.error_class.value
            yield openai_error_event(err)

    return SSEResponse(body(), {**_headers(rec, served, plan), **look.headers(), **rl}, finalize)


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the routes the caller's key may use, in OpenAI's list shape."""
    gw: Gateway = request.app.state.gateway
    try:
        rt = gw.runtime
        principal = await rt.auth.authenticate(request.headers.get("authorization"))
    except GatewayError as err:
        return Response(openai_error_body(err), err.status, media_type=_JSON)
    data = [
        {"id": r, "object": "model", "created": 0, "owned_by": "relaygate"} for r in rt.routes_for(principal)
    ]
    headers = {"x-request-id": new_request_id()}
    return Response(orjson.dumps({"object": "list", "data": data}), headers=headers, media_type=_JSON)


async def tenant_usage(request: Request) -> Response:
    """``GET /v1/usage?since=1h&by=route``: the caller's own tenant's usage, never another's."""
    gw: Gateway = request.app.state.gateway
    storage = getattr(request.app.state, "storage", None)
    try:
        principal = await gw.runtime.auth.authenticate(request.headers.get("authorization"))
        if principal.key_id is None:
            raise AuthenticationError(
                "Usage is per tenant: send your tenant's virtual key.", code="missing_api_key"
            )
        by = request.query_params.get("by", "route")
        if by not in ("route", "deployment"):
            raise InvalidRequestError("by must be route or deployment", param="by")
        try:
            since = datetime.now(UTC) - parse_duration(request.query_params.get("since", "24h"))
        except ValueError as exc:
            raise InvalidRequestError(str(exc), param="since") from exc
        if storage is None:
            raise NotFoundError("This gateway runs without a ledger.", code="storage_disabled")
        rows = await asyncio.to_thread(storage.usage.query_usage, since, by, tenant=principal.tenant)
    except GatewayError as err:
        return Response(openai_error_body(err), err.status, err.headers, media_type=_JSON)
    return Response(
        orjson.dumps({"object": "list", "tenant": principal.tenant, "data": rows}), media_type=_JSON
    )
