"""A pure-ASGI SSE response that always finalises, even if the client leaves early.

Starlette's StreamingResponse never starts its iterator when the client is gone before the
first byte, so cleanup inside the generator would not run; here ``finalize(disconnected)``
runs exactly once in every case, after the body iterator is closed (which releases the
upstream connection), so no ledger row is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

__all__ = ["SSEResponse"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SSEResponse:
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        headers: dict[str, str],
        finalize: Callable[[bool], Awaitable[None]],
    ) -> None:
        self.body = body
        self.headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.finalize = finalize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._watch(receive))
        # One loop turn for the watcher first: a client that left while the gateway held the
        # stream back (failover happens before the first byte) is gone already; the server would
        # drop the writes without an error, and a pump over upstream bytes that are all buffered
        # would finish without ever yielding, so the row would say "complete".
        await asyncio.sleep(0)
        disconnected = watcher.done()
        pump = None if disconnected else asyncio.ensure_future(self._pump(send))
        try:
            if pump is not None:
                done, _ = await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if pump not in done:
                    disconnected = True
                    pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await pump
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if pump is not None and not pump.done():
                pump.cancel()
            with contextlib.suppress(Exception):
                await self.body.aclose()
            await self.finalize(disconnected)

    async def _pump(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        async for chunk in self.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _watch(receive: Receive) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
