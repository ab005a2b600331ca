"""HTTP/1.1 upstream client on asyncio and httptools: keep-alive connections pooled per origin.

Why not aiohttp's client: on the pass-through hot path it was a quarter of the gateway's CPU per
request (cookie jar, tracing hooks, multidict headers, payload registry, a ``ClientResponse`` per
request), measured in ``bench/flamegraphs/README.md``. Here a request is one ``write()`` of
ready bytes and the response is parsed by llhttp (httptools, already the server's parser).

Scope, on purpose: ``POST`` with a ``Content-Length`` body (all the gateway sends), responses
with ``Content-Length``, chunked or read-until-close bodies (RFC 9112 §6.3), ``gzip``/``deflate``
content codings decoded should an upstream send them although the request asks for
``identity`` (RFC 9110 §12.5.3), TLS through the ``ssl`` module with the system's trust store.
No proxies (the aiohttp client did not read proxy settings either), no redirects, no cookies.

A request is written once and never sent again by this client, even when a reused keep-alive
connection turns out to be closed: LLM calls are POSTs that cost money, and RFC 9110 §9.2.2 says a
client should not repeat a non-idempotent request on its own; the router's retry policy decides.
Idle connections the upstream closes leave the pool at once; idle ones older than
``_IDLE_EXPIRY_S`` are closed by a sweep.

Errors: ``HTTPClientError`` (an ``OSError``, so callers that caught connection errors still do)
with a client-safe message; timeouts are the caller's (``asyncio.timeout`` around the awaits).
Field values are decoded as ISO-8859-1 (RFC 9110 §5.5: other octets are opaque), which never
fails and round-trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["ConnectTimeoutError", "ConnectionPool", "HTTPClientError", "Origin", "PooledResponse"]

_PAUSE_AT = 1 << 20  # bytes buffered unread before the socket stops being read
_IDLE_EXPIRY_S = 15.0  # as aiohttp's keepalive_timeout: idle connections older than this close
_MAX_DECODED_UNREAD = 16 << 20  # a gzip/deflate body may expand to this much unread, no more


class HTTPClientError(OSError):
    """The connection failed, broke, or the upstream's answer is not valid HTTP/1.1."""


class ConnectTimeoutError(HTTPClientError):
    """TCP (and TLS) set-up took longer than the pool's connect timeout."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a URL's requests go: ``key`` = (scheme, host, port); ``target`` = path and query."""

    key: tuple[str, str, int]
    host_header: str
    target: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        """Raises ``ValueError`` for a URL that is not absolute ``http``/``https``."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an absolute http(s) URL: {url!r}")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default else f"{shown}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls((parts.scheme, host, port), host_header, target)


_FRAMING = frozenset(("host", "content-length", "transfer-encoding", "connection"))


def _encode_head(origin: Origin, headers: dict[str, str], length: int) -> bytes:
    """Request line and headers; ``Host`` and ``Content-Length`` are the client's own (a
    configured header of those names, or a framing header, is left out)."""
    lines = [f"POST {origin.target} HTTP/1.1", f"Host: {origin.host_header}"]
    sent = set()
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise HTTPClientError(f"invalid request header {name!r}")
        lower = name.lower()
        if lower in _FRAMING:
            continue
        lines.append(f"{name}: {value}")
        sent.add(lower)
    lines.append(f"Content-Length: {length}")
    if "accept-encoding" not in sent:
        lines.append("Accept-Encoding: identity")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise HTTPClientError("a request header value is not ISO-8859-1 text") from exc


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the response being read on it (one at a time)."""

    def __init__(self, key: tuple[str, str, int], on_idle_lost: Callable[[_Connection], None]) -> None:
        self.key = key
        self._on_idle_lost = on_idle_lost
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.in_use = True  # between the pool's acquire and put
        self.uses = 0  # requests started on this connection; tells a stale PooledResponse apart
        self.idle_since = 0.0
        self.chunks: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._decoder: zlib._Decompress | None = None  # type: ignore[name-defined]
        self._new_response()

    def _new_response(self) -> None:
        """The per-response state, empty (at connect and before each request)."""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks.clear()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: HTTPClientError | None = None
        self.headers_done = False
        self.extra = False  # bytes past the end of the answer: the connection is not reused
        self._encoded_in = False  # any body bytes fed to the decoder
        self._decoder = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # nothing was asked: an idle connection must stay silent
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HTTPClientError(f"upstream sent invalid HTTP ({type(exc).__name__})"))
            self.close()

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.in_use:
            self._on_idle_lost(self)
            return
        if self.complete:
            return
        if exc is None and self.error is None and self.headers_done and self._reads_until_close():
            self.on_message_complete()  # a body that ends with the connection (RFC 9112 §6.3)
            return
        what = "upstream closed the connection" if exc is None else "upstream connection broke"
        self._fail(HTTPClientError(f"{what} ({type(exc).__name__ if exc else 'EOF'})"))

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.headers_done:  # a second answer to one request: keep the first, drop the link
            self.extra = True
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.headers_done:  # trailers (and anything after the answer) are not headers
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.headers_done:
            return
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self.headers = {}
            return
        coding = self.headers.get("content-encoding", "identity").strip().lower()
        if coding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._decoder = zlib.decompressobj()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.extra or self.error is not None:
            return
        decoder = self._decoder
        if decoder is not None:
            self._encoded_in = True
            room = _MAX_DECODED_UNREAD - self.buffered
            try:
                body = decoder.decompress(body, room + 1)
            except zlib.error as exc:
                self._fail(HTTPClientError(f"upstream sent a corrupt encoded body ({exc})"))
                self.close()
                return
            if decoder.unconsumed_tail or len(body) > room:
                self._fail(HTTPClientError("upstream's encoded body expands past 16 MiB unread"))
                self.close()
                return
            if not body:
                return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done or self.extra or self.error is not None:
            return  # the end of an interim (1xx) message, of extra bytes, or of a failed body
        decoder = self._decoder
        if decoder is not None and self._encoded_in:
            rest = decoder.flush()
            if not decoder.eof:
                self._fail(HTTPClientError("upstream's encoded body is truncated"))
                self.close()
                return
            if rest:
                self.chunks.append(rest)
                self.buffered += len(rest)
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive() and not self.closed
        self._wake()

    # -- used by the pool and PooledResponse ---------------------------------------------------
    def _reads_until_close(self) -> bool:
        return (
            "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
        )

    def _fail(self, error: HTTPClientError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until something arrives (headers, a chunk, the end or an error)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> bytes:
        """All buffered body bytes (b"" when none), resuming the socket if it was paused."""
        if not self.chunks:
            return b""
        data = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def start(self, data: bytes) -> None:
        """Reset the response state and send one request."""
        self.uses += 1
        self._new_response()
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class PooledResponse:
    """A response whose headers have arrived; the body is read with ``read()`` or ``chunk()``.
    ``release()`` gives the connection back (kept alive only if the body was read to the end)."""

    __slots__ = ("_conn", "_pool", "_use", "headers", "status")

    def __init__(self, pool: ConnectionPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self._use = conn.uses
        self.status = conn.status
        self.headers = conn.headers

    def _mine(self) -> bool:
        # False once the connection went back to the pool (and maybe on to another request)
        return self._conn.in_use and self._conn.uses == self._use

    def _check(self) -> _Connection:
        if not self._mine():
            raise HTTPClientError("the response was already released")
        return self._conn

    def complete(self) -> bool:
        """True once the whole body has arrived (``read()`` will not wait)."""
        return self._mine() and self._conn.complete

    def ready(self) -> bytes | None:
        """Without waiting: the body bytes already here, b"" at the body's end, or None when
        the caller must wait (``chunk()``). Raises ``HTTPClientError`` like ``chunk()``."""
        conn = self._check()
        data = conn.take()
        if data:
            return data
        if conn.error is not None:
            raise conn.error
        return b"" if conn.complete else None

    async def chunk(self) -> bytes:
        """The body bytes that arrived since the last call, waiting for some; b"" at the end.
        Raises ``HTTPClientError`` if the connection breaks before the body's end, or if the
        response was already released."""
        while (data := self.ready()) is None:
            await self._conn.wait()
        return data

    async def read(self, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes (the rest is dropped with the connection)."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            data = await self.chunk()
            if not data:
                break
            parts.append(data)
            size += len(data)
        body = b"".join(parts)
        return body[:limit]

    def release(self) -> None:
        if self._mine():
            self._pool.put(self._conn)

    def close(self) -> None:
        if self._mine():
            self._conn.close()
            self._pool.put(self._conn)

    def __del__(self) -> None:
        # a response dropped without release() must not hold a pool slot for ever
        if self._mine():
            with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                self._conn.close()
                self._pool.put(self._conn)


class ConnectionPool:
    """Keep-alive connections per origin, at most ``limit`` open in all (as aiohttp's connector
    ``limit``; a request waits for a free slot). ``connect_timeout_s`` bounds TCP + TLS set-up;
    ``https`` origins are verified with ``ssl_context`` (default: the system's trust store)."""

    def __init__(
        self, limit: int, connect_timeout_s: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._limit = limit
        self._connect_timeout = connect_timeout_s
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._ssl = ssl_context
        self._closed = False
        self._swept = time.monotonic()

    async def request(self, origin: Origin, headers: dict[str, str], body: bytes) -> PooledResponse:
        """Send ``POST`` with ``body`` once; returns once the response headers are in.

        Raises ``HTTPClientError`` (``ConnectTimeoutError`` past the connect timeout).
        """
        data = _encode_head(origin, headers, len(body)) + body
        conn = await self._acquire(origin.key)
        try:
            conn.start(data)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException:  # broken, or cancelled (a timeout): the answer cannot be read
            conn.close()
            self.put(conn)
            raise
        return PooledResponse(self, conn)

    async def _acquire(self, key: tuple[str, str, int]) -> _Connection:
        while True:
            now = time.monotonic()
            if now - self._swept > _IDLE_EXPIRY_S / 3:
                self._sweep(now)
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < _IDLE_EXPIRY_S:
                    conn.in_use = True
                    return conn
                self._discard(conn)
            if self._open < self._limit or self._close_oldest_idle():
                break
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on
                raise
        self._open += 1
        try:
            return await self._connect(key)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _connect(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(key, self._idle_lost),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError as exc:
            raise ConnectTimeoutError(f"connect timeout ({self._connect_timeout * 1000:.0f} ms)") from exc
        except (OSError, ssl.SSLError) as exc:
            raise HTTPClientError(f"cannot connect ({type(exc).__name__})") from exc
        return conn

    def put(self, conn: _Connection) -> None:
        """Give a connection back after a response: idle if reusable, closed otherwise."""
        if not conn.in_use:  # already given back
            return
        conn.in_use = False
        if self._closed or conn.closed or not conn.complete or not conn.keep_alive or conn.chunks:
            conn.close()
            self._open -= 1
            self._wake_one()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_one()

    def _discard(self, conn: _Connection) -> None:
        """Close a connection already taken out of the idle lists; frees its slot."""
        conn.close()
        self._open -= 1
        self._wake_one()

    def _idle_lost(self, conn: _Connection) -> None:
        """An idle connection closed (by the upstream, or by a sweep): out of the pool."""
        conns = self._idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            self._open -= 1
            self._wake_one()

    def _sweep(self, now: float) -> None:
        """Close idle connections older than ``_IDLE_EXPIRY_S`` (every origin's)."""
        self._swept = now
        for conns in self._idle.values():
            while conns and (conns[0].closed or now - conns[0].idle_since >= _IDLE_EXPIRY_S):
                self._discard(conns.pop(0))

    def _close_oldest_idle(self) -> bool:
        oldest: _Connection | None = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        oldest.close()
        self._open -= 1
        return True

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every idle connection; in-use ones close when given back."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
