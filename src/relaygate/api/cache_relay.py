"""The response cache at the HTTP edges: look up after policy, serve a hit in the client's wire
format (plain or streamed, OpenAI or Anthropic), and store a miss's answer once it is complete.

A hit is a normal answer with a new ``id`` and ``created``; its ledger row says ``cache=hit``
(or ``semantic_hit``) with no attempts, no upstream tokens and zero cost. A streamed hit is
synthesised from the cached ``chat.completion`` (``cache.replay``); a streamed miss is
assembled as it passes and stored only if the upstream stream completed normally.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response

from relaygate.api.streaming import SSEResponse
from relaygate.cache.replay import StreamAssembler, fresh_completion, synth_chunks
from relaygate.cache.service import Lookup
from relaygate.ledger.records import UsageRecord
from relaygate.pipeline import Gateway, Plan
from relaygate.protocols.openai import ChatRequest
from relaygate.protocols.openai_stream import ChunkKind
from relaygate.protocols.sse import SSEEvent, encode_event
from relaygate.protocols.translate_anthropic import OpenAIToAnthropicStream, openai_response_to_anthropic
from relaygate.routing.router import Served

__all__ = ["anthropic_hit", "cache_lookup", "cache_store", "cache_tap", "openai_hit"]

log = logging.getLogger("relaygate.api")
_JSON = "application/json"
_NO_CACHE = Lookup()
Batch = list[tuple[SSEEvent, ChunkKind]]


async def cache_lookup(
    gw: Gateway,
    tenant: str | None,
    req: ChatRequest,
    plan: Plan,
    rec: UsageRecord,
    cache_control: str | None = None,
) -> Lookup:
    """The cache's verdict for a request policy has already allowed (``plan``); sets
    ``rec.cache``. ``cache_control``: the request's ``Cache-Control`` header (``no-cache`` /
    ``no-store`` bypass the cache, see ``ResponseCache.lookup``). A cache bug never fails the
    request: it is logged and the request goes on."""
    config = gw.runtime.config
    route_cfg = config.routes[req.model].cache if req.model in config.routes else None
    if route_cfg is None or not route_cfg.enabled:
        return _NO_CACHE  # the common case: no set, no await (~0.5-0.8% of a request's CPU)
    try:
        allowed = {d.deployment_id for d in plan.candidates}
        look = await gw.cache.lookup(config, tenant, req.model, req.data, allowed, cache_control)
    except Exception:
        log.exception("cache lookup failed for %s; serving without the cache", rec.request_id)
        return _NO_CACHE
    rec.cache = look.status
    return look


def cache_store(gw: Gateway, look: Lookup, body: bytes, served: Served) -> None:
    """Queue a miss's 200 ``chat.completion`` ``body`` for storing (off the request path)."""
    if look.storable:
        dep = served.deployment
        gw.cache.store_soon(look, body, dep.deployment_id if dep else None, dep.provider if dep else None)


async def cache_tap(
    batches: AsyncIterator[Batch], gw: Gateway, look: Lookup, served: Served
) -> AsyncIterator[Batch]:
    """Pass ``batches`` through; when they end normally with every choice finished, store the
    assembled answer. A cut, an error or a client that left (the generator is closed early) stores
    nothing."""
    if not look.storable:
        async for batch in batches:
            yield batch
        return
    assembler = StreamAssembler()
    async for batch in batches:
        for ev, kind in batch:
            if kind in (ChunkKind.CONTENT, ChunkKind.PREAMBLE, ChunkKind.USAGE) and ev.data:
                try:
                    chunk = orjson.loads(ev.data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(chunk, dict):
                    assembler.feed(chunk)
        yield batch
    doc = assembler.result()
    if doc is not None:
        cache_store(gw, look, orjson.dumps(doc), served)


def _hit_doc(look: Lookup, rec: UsageRecord) -> dict[str, Any]:
    """The fresh answer of a hit, and the ledger fields of one: no attempts, zero upstream cost."""
    assert look.entry is not None
    doc = fresh_completion(orjson.loads(look.entry.body))
    choices = doc.get("choices") or [{}]
    rec.status, rec.finish_reason = 200, choices[0].get("finish_reason")
    rec.attempts, rec.cost_usd = [], 0.0
    rec.prompt_tokens, rec.completion_tokens = 0, 0
    return doc


def _stream_hit(
    gw: Gateway, rec: UsageRecord, body: AsyncGenerator[bytes, None], headers: dict[str, str], t0: float
) -> SSEResponse:
    rec.ttft_ms = (time.monotonic() - t0) * 1000

    async def finalize(disconnected: bool) -> None:
        rec.complete = not disconnected
        if disconnected:
            rec.error_code = "client_disconnected"
        rec.latency_ms = (time.monotonic() - t0) * 1000
        await gw.record(rec)

    return SSEResponse(body, headers, finalize)


def openai_hit(
    gw: Gateway, rec: UsageRecord, req: ChatRequest, look: Lookup, headers: dict[str, str], t0: float
) -> Response | SSEResponse:
    """A hit on ``/v1/chat/completions``: the JSON answer, or its synthesised SSE stream."""
    doc = _hit_doc(look, rec)
    headers = {**headers, **look.headers()}
    if not req.stream:
        return Response(orjson.dumps(doc), 200, headers, media_type=_JSON)

    async def body() -> AsyncGenerator[bytes, None]:
        chunks = synth_chunks(doc, include_usage=req.include_usage)
        yield b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"

    return _stream_hit(gw, rec, body(), headers, t0)


def anthropic_hit(
    gw: Gateway,
    rec: UsageRecord,
    req: ChatRequest,
    look: Lookup,
    headers: dict[str, str],
    t0: float,
    model: str,
) -> Response | SSEResponse:
    """A hit on ``/v1/messages``: the cached OpenAI answer through the usual translation, as a
    Messages answer or its event stream; ``model`` is the name the client asked for."""
    doc = _hit_doc(look, rec)
    headers = {**headers, **look.headers()}
    if not req.stream:
        out = openai_response_to_anthropic(doc, model=model)
        return Response(orjson.dumps(out), 200, headers, media_type=_JSON)

    async def body() -> AsyncGenerator[bytes, None]:
        translator = OpenAIToAnthropicStream(model=model, message_id=f"msg_{rec.request_id[4:]}")
        out: list[bytes] = []
        for chunk in synth_chunks(doc, include_usage=True):
            out += [encode_event(orjson.dumps(d), n) for n, d in translator.feed(chunk)]
        out += [encode_event(orjson.dumps(d), n) for n, d in translator.finish()]
        yield b"".join(out)

    return _stream_hit(gw, rec, body(), headers, t0)
