"""Relay a committed upstream stream to the client, whatever wire format the client speaks.

``upstream_batches`` yields the upstream's OpenAI-shaped SSE events (the held-back ones
first), one list per network chunk, and raises ``UpstreamError`` for an in-band error event
or a stream that ends without a finish_reason or ``[DONE]``. Each edge (OpenAI, Anthropic)
formats the events and renders the error its own way; ``finalizer`` records the one ledger
row when the response ends, however it ends (and, where the route or tenant opted in, queues the
captured payload of a complete stream, without the answer's text).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from relaygate.errors import ErrorClass, UpstreamError
from relaygate.ledger.records import UsageRecord
from relaygate.pipeline import Gateway
from relaygate.protocols.openai import ChatRequest
from relaygate.protocols.openai_stream import ChunkKind
from relaygate.protocols.sse import SSEEvent
from relaygate.routing.attempts import OpenedStream, stream_error
from relaygate.routing.native_attempts import NativeStream
from relaygate.routing.router import Served

__all__ = ["finalizer", "upstream_batches"]

Batch = list[tuple[SSEEvent, ChunkKind]]


async def upstream_batches(opened: OpenedStream) -> AsyncIterator[Batch]:
    watch = opened.watch
    if opened.buffered:
        yield list(opened.buffered)
        opened.buffered.clear()
    if not opened.ended:
        async for chunk in opened.chunks:
            batch: Batch = []
            for ev in opened.decoder.feed(chunk):
                kind = watch.inspect(ev)
                if kind is ChunkKind.ERROR:
                    raise stream_error(watch.error or {})
                batch.append((ev, kind))
            if batch:
                yield batch
        tail = opened.decoder.finish()
        if tail is not None:
            kind = watch.inspect(tail)
            if kind is ChunkKind.ERROR:
                raise stream_error(watch.error or {})
            yield [(SSEEvent(tail.raw + b"\n\n", tail.data, tail.event), kind)]
    if not watch.done and watch.finish_reason is None:
        raise UpstreamError(
            "upstream stream ended before a finish_reason or [DONE]", error_class=ErrorClass.STREAM_CUT
        )


def finalizer(
    gw: Gateway,
    rec: UsageRecord,
    served: Served,
    opened: OpenedStream | NativeStream,
    t0: float,
    req: ChatRequest | None = None,
) -> Callable[[bool], Awaitable[None]]:
    """The stream's end: release the upstream, fill usage/cost/completeness, record the row.
    ``opened`` is a translated stream or an Anthropic pass-through one: both watches give
    ``done``, ``complete``, ``content_seen``, ``usage`` and ``finish_reason``."""
    watch = opened.watch
    rec.status = 200
    gw.account(rec, served, None)
    if watch.content_seen:
        rec.ttft_ms = (time.monotonic() - t0) * 1000

    async def finalize(disconnected: bool) -> None:
        if watch.done:
            opened.resp.release()
        else:
            opened.resp.close()
        gw.account(rec, served, watch.usage)
        rec.finish_reason = watch.finish_reason
        rec.complete = watch.complete and not disconnected and rec.error_code is None
        if disconnected and rec.error_code is None:
            rec.error_code = "client_disconnected"
        rec.latency_ms = (time.monotonic() - t0) * 1000
        await gw.record(rec)
        if req is not None and gw.payloads is not None and rec.complete:
            await gw.capture(gw.runtime.config, rec, req)

    return finalize
