"""Pooled upstream HTTP client: one keep-alive connection pool per provider, split timeouts.

The only module the providers use to reach an upstream; the HTTP/1.1 client itself is
``providers/http1.py`` (asyncio + httptools, chosen over aiohttp's client by measurement:
bench/flamegraphs/README.md). Its errors are translated here, once, into
``UpstreamTimeoutError`` / ``UpstreamConnectionError`` (``raise ... from exc``).
Timeouts (ms) come from ``config.schema.Timeouts``: connect, first byte, idle gap between
body chunks, total per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from types import TracebackType

from relaygate.config.schema import Timeouts
from relaygate.errors import UpstreamConnectionError, UpstreamTimeoutError
from relaygate.providers.http1 import (
    ConnectionPool,
    ConnectTimeoutError,
    HTTPClientError,
    Origin,
    PooledResponse,
)

__all__ = ["Transport", "UpstreamResponse"]

log = logging.getLogger("relaygate.transport")


def _broken(what: str, exc: BaseException) -> str:
    """A client-safe message; the underlying error's text goes to the log only."""
    log.info("%s: %r", what, exc)
    return f"{what} ({exc})" if isinstance(exc, HTTPClientError) else f"{what} ({type(exc).__name__})"


class UpstreamResponse:
    """A response whose headers have arrived. Read the body with ``read()`` or
    ``iter_chunks()``; always ``release()`` (or use ``async with``)."""

    __slots__ = ("_deadline", "_resp", "_timeouts", "headers", "status")

    def __init__(self, resp: PooledResponse, timeouts: Timeouts, deadline: float) -> None:
        self._resp = resp
        self._timeouts = timeouts
        self._deadline = deadline
        self.status = resp.status
        self.headers = resp.headers  # names in lower case

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise UpstreamTimeoutError(f"upstream exceeded total timeout ({self._timeouts.total_ms} ms)")
        return left

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body (bounded by the total timeout and ``limit`` bytes)."""
        try:
            if self._resp.complete():  # arrived with the headers: no timer needed
                return await self._resp.read(limit)
            async with asyncio.timeout(self._remaining()):
                body = await self._resp.read(limit)
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                f"upstream body not complete within total timeout ({self._timeouts.total_ms} ms)"
            ) from exc
        except OSError as exc:
            raise UpstreamConnectionError(
                _broken("upstream connection broke while reading the body", exc)
            ) from exc
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive. The first chunk must come within ``first_byte_ms``,
        each later one within ``idle_ms`` of the previous, all within ``total_ms``."""
        t = self._timeouts
        wait_ms, which = t.first_byte_ms, "first byte"
        resp = self._resp
        while True:
            left = self._remaining()
            try:
                chunk = resp.ready()  # already here (the usual case under load): no timer
                if chunk is None:
                    if left < wait_ms / 1000:
                        wait_ms, which = t.total_ms, "total"
                    async with asyncio.timeout(min(wait_ms / 1000, left)):
                        chunk = await resp.chunk()
            except TimeoutError as exc:
                raise UpstreamTimeoutError(f"upstream stream {which} timeout ({wait_ms} ms)") from exc
            except OSError as exc:
                raise UpstreamConnectionError(_broken("upstream connection broke mid-stream", exc)) from exc
            if not chunk:
                return
            wait_ms, which = t.idle_ms, "idle"
            yield chunk

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        """Drop the connection (used when a stream is abandoned half-way)."""
        self._resp.close()

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Transport:
    """One pooled client for one provider. ``start()`` inside the event loop, ``close()`` at exit."""

    def __init__(self, timeouts: Timeouts, max_connections: int = 256) -> None:
        self.timeouts = timeouts
        self._max = max_connections
        self._pool: ConnectionPool | None = None
        # Parsed once per distinct URL (a provider has one, or one per region).
        self._origins: dict[str, Origin] = {}

    async def start(self) -> None:
        if self._pool is None:
            self._pool = ConnectionPool(self._max, self.timeouts.connect_ms / 1000)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        """Send ``body`` and wait for the response headers (``first_byte_ms``).

        Raises ``UpstreamTimeoutError`` or ``UpstreamConnectionError``; any HTTP status is
        returned, not raised.
        """
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        t = self.timeouts
        deadline = time.monotonic() + t.total_ms / 1000
        try:
            origin = self._origin(url)
            async with asyncio.timeout(min(t.first_byte_ms, t.total_ms) / 1000):
                resp = await self._pool.request(origin, headers, body)
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"no response headers within {t.first_byte_ms} ms") from exc
        except ConnectTimeoutError as exc:
            raise UpstreamTimeoutError(f"connect timeout ({t.connect_ms} ms)") from exc
        except (OSError, ValueError) as exc:
            raise UpstreamConnectionError(_broken("cannot reach the upstream", exc)) from exc
        return UpstreamResponse(resp, t, deadline)

    def _origin(self, url: str) -> Origin:
        origin = self._origins.get(url)
        if origin is None:
            if len(self._origins) >= 64:  # a bound, should a caller ever build URLs per request
                self._origins.clear()
            origin = self._origins[url] = Origin.parse(url)
        return origin

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
