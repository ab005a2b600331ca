"""Pooled upstream HTTP client: one aiohttp session per provider, split timeouts.

The only module that talks to aiohttp. Its exceptions are translated here, once, into
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

import aiohttp
from yarl import URL

from relaygate.config.schema import Timeouts
from relaygate.errors import UpstreamConnectionError, UpstreamTimeoutError

__all__ = ["Transport", "UpstreamResponse"]

log = logging.getLogger("relaygate.transport")


def _broken(what: str, exc: BaseException) -> str:
    """A client-safe message; the library's own text goes to the log only."""
    log.info("%s: %r", what, exc)
    return f"{what} ({type(exc).__name__})"


class UpstreamResponse:
    """A response whose headers have arrived. Read the body with ``read()`` or
    ``iter_chunks()``; always ``release()`` (or use ``async with``)."""

    __slots__ = ("_deadline", "_resp", "_timeouts", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, timeouts: Timeouts, deadline: float) -> None:
        self._resp = resp
        self._timeouts = timeouts
        self._deadline = deadline
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.headers.items()}

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise UpstreamTimeoutError(f"upstream exceeded total timeout ({self._timeouts.total_ms} ms)")
        return left

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body (bounded by the total timeout and ``limit`` bytes)."""
        try:
            async with asyncio.timeout(self._remaining()):
                body = await self._resp.content.read(limit)
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                f"upstream body not complete within total timeout ({self._timeouts.total_ms} ms)"
            ) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamConnectionError(
                _broken("upstream connection broke while reading the body", exc)
            ) from exc
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive. The first chunk must come within ``first_byte_ms``,
        each later one within ``idle_ms`` of the previous, all within ``total_ms``."""
        wait_ms = self._timeouts.first_byte_ms
        content = self._resp.content
        while True:
            limit = min(wait_ms / 1000, self._remaining())
            try:
                async with asyncio.timeout(limit):
                    chunk = await content.readany()
            except TimeoutError as exc:
                which = "first byte" if wait_ms == self._timeouts.first_byte_ms else "idle"
                raise UpstreamTimeoutError(f"upstream stream {which} timeout ({wait_ms} ms)") from exc
            except (aiohttp.ClientError, ConnectionError) as exc:
                raise UpstreamConnectionError(_broken("upstream connection broke mid-stream", exc)) from exc
            if not chunk:
                return
            wait_ms = self._timeouts.idle_ms
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
        self._session: aiohttp.ClientSession | None = None
        # Parsed once per distinct URL (a provider has one, or one per region): aiohttp would
        # parse and validate the string on every request.
        self._urls: dict[str, URL] = {}

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max, ttl_dns_cache=300, enable_cleanup_closed=True)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect_ms / 1000)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        """Send ``body`` and wait for the response headers (``first_byte_ms``).

        Raises ``UpstreamTimeoutError`` or ``UpstreamConnectionError``; any HTTP status is
        returned, not raised.
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        t = self.timeouts
        deadline = time.monotonic() + t.total_ms / 1000
        try:
            async with asyncio.timeout(min(t.first_byte_ms, t.total_ms) / 1000):
                resp = await self._session.post(self._url(url), data=body, headers=headers)
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"no response headers within {t.first_byte_ms} ms") from exc
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeoutError(f"connect timeout ({t.connect_ms} ms): {exc}") from exc
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            raise UpstreamConnectionError(_broken("cannot reach the upstream", exc)) from exc
        return UpstreamResponse(resp, t, deadline)

    def _url(self, url: str) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 64:  # a bound, should a caller ever build URLs per request
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        return parsed

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
