"""``/v1/messages`` with a same-protocol pass-through to Anthropic deployments.

``parse_messages`` reads the client's body once: the Anthropic dict, the OpenAI view policy,
PII detection, admission and the translated deployments read (built as before), and, when
the view cannot carry the request (``thinking``, documents, server tools...), the
``InvalidRequestError`` naming the field plus a text-only view that still serves policy and PII
detection. ``native_response`` / ``native_stream`` relay a pass-through answer as the upstream
sent it (JSON bytes, SSE bytes; https://docs.anthropic.com/en/docs/build-with-claude/streaming)
and fill the ledger row from its ``usage`` and ``stop_reason``.

The response cache stores OpenAI-shaped answers, which cannot hold what a pass-through relays
(thinking blocks and signatures, citations, cache usage): a request that may be served by
pass-through (any Anthropic deployment among the candidates) skips the cache,
``x-relaygate-cache: skip`` with ``x-relaygate-cache-match: none; reason=anthropic_passthrough``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from relaygate.api.error_render import anthropic_error_event
from relaygate.api.stream_relay import finalizer
from relaygate.api.streaming import SSEResponse
from relaygate.cache.service import Lookup
from relaygate.errors import ErrorClass, InvalidRequestError, UpstreamError
from relaygate.ledger.records import UsageRecord
from relaygate.pipeline import Gateway, Plan
from relaygate.protocols.anthropic import validate_request
from relaygate.protocols.openai import ChatRequest, parse_chat_request
from relaygate.protocols.translate_anthropic import anthropic_request_to_openai, anthropic_response_to_openai
from relaygate.providers.anthropic_passthrough import EventKind, forwarded_headers
from relaygate.routing.native_attempts import NativeCompletion, NativeRequest, NativeStream, speaks_anthropic
from relaygate.routing.router import Served
from relaygate.runtime import Runtime

__all__ = [
    "MessagesRequest",
    "native_response",
    "native_stream",
    "parse_messages",
    "passthrough_cache_skip",
    "require_servable",
]

_JSON = "application/json"
SKIP_REASON = "anthropic_passthrough"


@dataclass(slots=True)
class MessagesRequest:
    body: dict[str, Any]
    view: ChatRequest  # the OpenAI view: translated request, or text-only when untranslatable
    native: NativeRequest
    untranslatable: InvalidRequestError | None


def parse_messages(raw: bytes, headers: Mapping[str, str]) -> MessagesRequest:
    """Client body bytes -> ``MessagesRequest``. Raises ``InvalidRequestError`` for a body that
    is not a valid Messages request (whatever would serve it)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    validate_request(body)
    untranslatable: InvalidRequestError | None = None
    try:
        oa = anthropic_request_to_openai(body)
    except InvalidRequestError as err:
        untranslatable, oa = err, _text_view(body)
    if oa.get("stream"):
        oa["stream_options"] = {"include_usage": True}  # Anthropic streams always report usage
    native = NativeRequest(raw, body.get("stream") is True, forwarded_headers(headers))
    return MessagesRequest(body, parse_chat_request(orjson.dumps(oa)), native, untranslatable)


def _text_view(body: dict[str, Any]) -> dict[str, Any]:
    """A text-only OpenAI view of a request that cannot be translated, for policy and PII
    detection only (it is never sent): every string a block carries, per turn."""
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append({"role": "system", "content": _text(body["system"])})
    for msg in body["messages"]:
        messages.append({"role": msg["role"], "content": _text(msg["content"])})
    out = {"model": body["model"], "max_tokens": body["max_tokens"], "messages": messages}
    if body.get("stream") is True:
        out["stream"] = True
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in (_text(b) for b in content) if t)
    if not isinstance(content, dict):
        return ""
    parts = [content[k] for k in ("text", "thinking", "title", "context") if isinstance(content.get(k), str)]
    if isinstance(content.get("input"), dict):
        parts.append(orjson.dumps(content["input"]).decode())
    for key in ("content", "source"):
        inner = content.get(key)
        if inner is not None and not (isinstance(inner, dict) and inner.get("type") == "base64"):
            parts.append(_text(inner))
    if content.get("type") == "text" and isinstance(content.get("data"), str):  # a plain-text source
        parts.append(content["data"])
    return "\n".join(p for p in parts if p)


def _native_candidates(rt: Runtime, plan: Plan) -> bool:
    return any(speaks_anthropic(rt.providers[d.provider]) for d in plan.candidates)


def require_servable(rt: Runtime, plan: Plan, mreq: MessagesRequest) -> None:
    """Raise the request's ``InvalidRequestError`` (400 naming the field) when it cannot be
    translated and no candidate left by policy speaks Anthropic (no upstream is tried)."""
    if mreq.untranslatable is not None and plan.candidates and not _native_candidates(rt, plan):
        raise mreq.untranslatable


def passthrough_cache_skip(rt: Runtime, plan: Plan, rec: UsageRecord) -> Lookup | None:
    """The cache verdict ``skip`` (reason ``anthropic_passthrough``) when the route caches and a
    candidate would be served by pass-through; None when the usual lookup applies."""
    route = rt.config.routes.get(plan.route)
    if route is None or route.cache is None or not route.cache.enabled or not _native_candidates(rt, plan):
        return None
    rec.cache = "skip"
    return Lookup("skip", SKIP_REASON)


async def native_response(
    gw: Gateway,
    rec: UsageRecord,
    served: Served,
    comp: NativeCompletion,
    req: ChatRequest,
    headers: dict[str, str],
) -> Response:
    """A pass-through Message: the upstream's bytes unchanged, the ledger filled from them."""
    gw.account(rec, served, comp.usage)
    rec.status, rec.finish_reason = 200, comp.finish_reason
    if gw.payloads is not None:  # capture wants a chat.completion to read the answer's text
        oa = orjson.dumps(anthropic_response_to_openai(comp.message))
        await gw.capture(gw.runtime.config, rec, req, oa)
    return Response(comp.body, 200, headers, media_type=_JSON)


def native_stream(
    gw: Gateway,
    rec: UsageRecord,
    served: Served,
    opened: NativeStream,
    t0: float,
    req: ChatRequest,
    headers: dict[str, str],
) -> SSEResponse:
    """Relay a committed pass-through stream: the bytes read while opening, then every upstream
    chunk as it arrives (no re-encoding). A cut or broken upstream ends with an Anthropic
    ``error`` event; the ledger row is written when the response ends, however it ends."""
    finalize = finalizer(gw, rec, served, opened, t0, req)
    return SSEResponse(_relay(opened, rec), headers, finalize)


async def _relay(opened: NativeStream, rec: UsageRecord) -> AsyncGenerator[bytes, None]:
    watch = opened.watch
    try:
        if opened.buffered:
            yield b"".join(opened.buffered)
            opened.buffered.clear()
        if not opened.ended:
            async for chunk in opened.chunks:
                for ev in opened.decoder.feed(chunk):
                    _note(watch.inspect(ev), watch, rec)
                yield chunk
            tail = opened.decoder.finish()
            if tail is not None:
                _note(watch.inspect(tail), watch, rec)
        if not watch.done and rec.error_code is None:
            raise UpstreamError(
                "upstream stream ended before message_stop", error_class=ErrorClass.STREAM_CUT
            )
    except UpstreamError as err:
        rec.error_code = err.error_class.value
        # a cut can leave half an event behind: blank lines end it before the error event
        yield b"\n\n" + anthropic_error_event(err)


def _note(kind: EventKind, watch: Any, rec: UsageRecord) -> None:
    """An upstream error event is relayed as it is (already Anthropic-shaped); the row records it."""
    if kind is EventKind.ERROR and watch.error is not None and rec.error_code is None:
        rec.error_code = watch.error.error_class.value
