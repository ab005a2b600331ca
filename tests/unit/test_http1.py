"""The HTTP/1.1 upstream client (providers/http1.py) against raw asyncio servers that answer
scripted bytes: framing (length, chunked, until close), codings, keep-alive reuse and the
stale-connection retry, the pool's limit, back-pressure, and broken or invalid answers."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from relaygate.config.schema import Timeouts
from relaygate.errors import UpstreamConnectionError, UpstreamTimeoutError
from relaygate.providers.http1 import ConnectionPool, HTTPClientError, Origin
from relaygate.providers.transport import Transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Accepts connections; for every request read calls ``handler(reader, writer, n)`` where
    n counts requests over the server's life. Records each request's head and body."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions?x=1"

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                await self.handler(reader, writer, len(self.requests))
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def chunked(*parts: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    for p in parts:
        out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n\r\n"


def answer(data: bytes, close: bool = False) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(data)
        await writer.drain()
        if close:
            writer.close()

    return handler


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    p = ConnectionPool(limit=8, connect_timeout_s=2.0)
    yield p
    await p.close()


async def test_content_length_answer_and_request_bytes(pool: ConnectionPool) -> None:
    async with RawServer(answer(ok(b'{"a":1}', b"X-Request-Id: r1\r\n"))) as srv:
        resp = await pool.request(Origin.parse(srv.url), {"Authorization": "Bearer k"}, b'{"q":2}')
        assert resp.status == 200
        assert resp.headers["x-request-id"] == "r1"  # names in lower case
        assert await resp.read(1 << 20) == b'{"a":1}'
        resp.release()
    head, body = srv.requests[0]
    assert head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in head
    assert b"\r\nAuthorization: Bearer k\r\n" in head
    assert b"\r\nAccept-Encoding: identity\r\n" in head
    assert b"\r\nContent-Length: 7\r\n" in head
    assert body == b'{"q":2}'


async def test_keep_alive_reuses_one_connection(pool: ConnectionPool) -> None:
    async with RawServer(answer(ok(b"{}"))) as srv:
        for _ in range(5):
            resp = await pool.request(Origin.parse(srv.url), {}, b"{}")
            assert await resp.read(100) == b"{}"
            resp.release()
        assert srv.connections == 1
        assert len(srv.requests) == 5


async def test_chunked_stream_arrives_in_pieces(pool: ConnectionPool) -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        writer.write(head + b"6\r\ndata: \r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"3\r\n1\n\n\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"{}")
        assert await resp.chunk() == b"data: "
        gate.set()
        assert await resp.chunk() == b"1\n\n"
        assert await resp.chunk() == b""
        resp.release()
        # the chunked answer ended cleanly: the connection is reused
        resp = await pool.request(Origin.parse(srv.url), {}, b"{}")
        resp.close()
        assert srv.connections == 1


async def test_body_until_close(pool: ConnectionPool) -> None:
    data = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    async with RawServer(answer(data, close=True)) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert await resp.read(1000) == b"all of it"
        resp.release()


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_encoded_body_is_decoded(pool: ConnectionPool, coding: str) -> None:
    raw = b'{"text": "' + b"ab" * 5000 + b'"}'
    packed = gzip.compress(raw) if coding == "gzip" else zlib.compress(raw)
    async with RawServer(answer(ok(packed, b"Content-Encoding: %s\r\n" % coding.encode()))) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert await resp.read(1 << 20) == raw


async def test_read_limit_drops_the_rest(pool: ConnectionPool) -> None:
    never = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 200)
        await writer.drain()
        if n == 1:
            await never.wait()

    async with RawServer(handler) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert len(await resp.read(100)) == 100
        resp.release()  # body not read to its end: the connection is not reused
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        resp.close()
        assert srv.connections == 2


async def test_interim_100_continue_is_skipped(pool: ConnectionPool) -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")
    async with RawServer(answer(data)) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert resp.status == 200
        assert await resp.read(100) == b"done"


async def test_reused_connection_closed_before_answering_is_not_resent(pool: ConnectionPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 2:  # the upstream's idle timeout won the race: closed without answering
            writer.close()
            return
        writer.write(ok(b"%d" % n))
        await writer.drain()

    async with RawServer(handler) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert await resp.read(10) == b"1"
        resp.release()
        # a billed POST is never sent twice by the client (RFC 9110 9.2.2): the router decides
        with pytest.raises(HTTPClientError, match="closed the connection"):
            await pool.request(Origin.parse(srv.url), {}, b"")
        assert len(srv.requests) == 2
        resp = await pool.request(Origin.parse(srv.url), {}, b"")  # the next one: a new connection
        assert await resp.read(10) == b"3"
        assert srv.connections == 2


async def test_idle_connection_closed_by_upstream_leaves_the_pool(pool: ConnectionPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(ok(b"x"))
        await writer.drain()
        writer.close()  # closes after answering, without saying Connection: close

    async with RawServer(handler) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert await resp.read(10) == b"x"
        resp.release()
        for _ in range(50):
            if pool._open == 0:
                break
            await asyncio.sleep(0.01)
        assert pool._open == 0 and not any(pool._idle.values())


async def test_new_connection_closed_without_answer_is_not_retried(pool: ConnectionPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.close()

    async with RawServer(handler) as srv:
        with pytest.raises(HTTPClientError, match="closed the connection"):
            await pool.request(Origin.parse(srv.url), {}, b"")
        assert len(srv.requests) == 1


async def test_cut_mid_body_raises(pool: ConnectionPool) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    async with RawServer(answer(data, close=True)) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        with pytest.raises(HTTPClientError):
            await resp.read(1000)


async def test_invalid_http_raises(pool: ConnectionPool) -> None:
    async with RawServer(answer(b"SSH-2.0-OpenSSH\r\n\r\n")) as srv:
        with pytest.raises(HTTPClientError, match="invalid HTTP"):
            await pool.request(Origin.parse(srv.url), {}, b"")


async def test_header_injection_is_refused(pool: ConnectionPool) -> None:
    async with RawServer(answer(ok(b""))) as srv:
        with pytest.raises(HTTPClientError, match="invalid request header"):
            await pool.request(Origin.parse(srv.url), {"X-A": "v\r\nX-Evil: 1"}, b"")
        assert srv.requests == []


async def test_refused_connection_raises() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    pool = ConnectionPool(limit=2, connect_timeout_s=2.0)
    with pytest.raises(HTTPClientError, match="cannot connect"):
        await pool.request(Origin.parse(f"http://127.0.0.1:{port}/"), {}, b"")
    # the failed connect gave its slot back
    assert pool._open == 0


async def test_limit_makes_requests_wait_for_a_slot() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(ok(b"%d" % n))
        await writer.drain()

    pool = ConnectionPool(limit=1, connect_timeout_s=2.0)
    async with RawServer(handler) as srv:
        first = await pool.request(Origin.parse(srv.url), {}, b"")
        second = asyncio.create_task(pool.request(Origin.parse(srv.url), {}, b""))
        await asyncio.sleep(0.05)
        assert not second.done()  # waits: the only connection is in use
        assert await first.read(10) == b"1"
        first.release()
        resp = await asyncio.wait_for(second, 2)
        assert await resp.read(10) == b"2"
        assert srv.connections == 1
    await pool.close()


async def test_slow_reader_pauses_the_socket(pool: ConnectionPool) -> None:
    big = b"y" * (3 << 20)
    async with RawServer(answer(ok(big))) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        await asyncio.sleep(0.2)
        conn = resp._conn
        assert conn._paused  # more than 1 MiB unread: reading stopped
        assert conn.buffered < len(big)
        assert await resp.read(len(big) + 1) == big


def test_origin_parse() -> None:
    o = Origin.parse("https://api.example.com/v1/chat/completions")
    assert o.key == ("https", "api.example.com", 443)
    assert o.host_header == "api.example.com"
    assert o.target == "/v1/chat/completions"
    assert Origin.parse("http://[::1]:8080").host_header == "[::1]:8080"
    assert Origin.parse("http://[::1]:8080").target == "/"
    with pytest.raises(ValueError):
        Origin.parse("ftp://x/")
    with pytest.raises(ValueError):
        Origin.parse("/relative")


async def test_transport_maps_errors_and_timeouts() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(5)

    timeouts = Timeouts(connect_ms=500, first_byte_ms=200, idle_ms=200, total_ms=2000)
    async with Transport(timeouts) as transport, RawServer(silent) as srv:
        with pytest.raises(UpstreamTimeoutError, match="no response headers within 200 ms"):
            await transport.post(srv.url, {}, b"{}")
    async with Transport(timeouts) as transport:
        with pytest.raises(UpstreamConnectionError, match="cannot reach the upstream"):
            await transport.post("http://127.0.0.1:9/", {}, b"{}")


async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
    await writer.drain()
    await asyncio.sleep(5)


async def drips(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
    for _ in range(40):
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"1\r\nx\r\n")


@pytest.mark.parametrize(
    ("handler", "timeouts", "message"),
    [
        (stalls, Timeouts(connect_ms=500, first_byte_ms=500, idle_ms=150, total_ms=3000), "idle timeout"),
        (drips, Timeouts(connect_ms=500, first_byte_ms=1000, idle_ms=1000, total_ms=300), "total timeout"),
    ],
    ids=["idle", "total"],
)
async def test_stream_timeouts_are_named(handler: Handler, timeouts: Timeouts, message: str) -> None:
    async with Transport(timeouts) as transport, RawServer(handler) as srv:
        resp = await transport.post(srv.url, {}, b"{}")
        chunks = []
        with pytest.raises(UpstreamTimeoutError, match=message):
            async for chunk in resp.iter_chunks():
                chunks.append(chunk)
        assert chunks[0] == b"first"
        resp.close()


async def test_release_twice_and_dropped_responses_keep_the_pool_sound() -> None:
    import gc

    pool = ConnectionPool(limit=1, connect_timeout_s=2.0)
    async with RawServer(answer(ok(b"{}"))) as srv:
        first = await pool.request(Origin.parse(srv.url), {}, b"")
        await first.read(10)
        first.release()
        second = await pool.request(Origin.parse(srv.url), {}, b"")  # the same connection
        first.close()  # late: must not touch the connection now serving `second`
        assert await second.read(10) == b"{}"
        del second  # dropped without release(): its slot comes back
        gc.collect()
        third = await asyncio.wait_for(pool.request(Origin.parse(srv.url), {}, b""), 2)
        assert await third.read(10) == b"{}"
        third.release()
    await pool.close()


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_origin_is_verified_and_served(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    srv = RawServer(answer(ok(b'{"tls":true}')))
    srv.server = await asyncio.start_server(srv._conn, "127.0.0.1", 0, ssl=server_ctx)
    port = srv.server.sockets[0].getsockname()[1]
    url = f"https://localhost:{port}/v1/chat/completions"
    trusting = ConnectionPool(4, 5.0, ssl.create_default_context(cafile=str(cert)))
    resp = await trusting.request(Origin.parse(url), {}, b"{}")
    assert await resp.read(100) == b'{"tls":true}'
    resp.release()
    await trusting.close()
    system = ConnectionPool(4, 5.0)  # the system's trust store does not know this certificate
    with pytest.raises(HTTPClientError, match="cannot connect"):
        await system.request(Origin.parse(url), {}, b"{}")
    await system.close()
    srv.server.close()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def rst(writer: asyncio.StreamWriter) -> None:
    import socket
    import struct

    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (ok(gz(b"a" * 10000)[:40] + b"garbage!" * 30, b"Content-Encoding: gzip\r\n"), "corrupt encoded body"),
        (ok(gz(b"a" * 10000)[:-12], b"Content-Encoding: gzip\r\n"), "truncated"),
        (ok(zlib.compress(b"\0" * (40 << 20)), b"Content-Encoding: deflate\r\n"), "expands past 16 MiB"),
    ],
    ids=["corrupt", "truncated", "bomb"],
)
async def test_bad_encoded_bodies_raise(pool: ConnectionPool, wire: bytes, message: str) -> None:
    async with RawServer(answer(wire)) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        with pytest.raises(HTTPClientError, match=message):
            await resp.read(64 << 20)


async def test_reset_during_a_body_until_close_raises(pool: ConnectionPool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial-")
        await writer.drain()
        await asyncio.sleep(0.05)
        rst(writer)

    async with RawServer(handler) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        with pytest.raises(HTTPClientError, match="broke"):
            await resp.read(1000)


async def test_bytes_past_the_answer_do_not_leak_into_it(pool: ConnectionPool) -> None:
    evil = b"HTTP/1.1 500 Oops\r\nX-Injected: 1\r\nContent-Length: 5\r\n\r\nevil!"
    chunked_with_trailer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with RawServer(answer(ok(b"ok") + evil)) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert (resp.status, await resp.read(100)) == (200, b"ok")
        assert "x-injected" not in resp.headers
        resp.release()
        assert pool._open == 0  # not kept: the upstream's framing cannot be trusted
    async with RawServer(answer(chunked_with_trailer)) as srv:
        resp = await pool.request(Origin.parse(srv.url), {}, b"")
        assert await resp.read(100) == b"ok"
        assert "x-trailer" not in resp.headers  # a trailer is not a header


async def test_reading_a_released_response_raises(pool: ConnectionPool) -> None:
    async with RawServer(answer(ok(b"body"))) as srv:
        first = await pool.request(Origin.parse(srv.url), {}, b"")
        assert await first.read(10) == b"body"
        first.release()
        second = await pool.request(Origin.parse(srv.url), {}, b"")  # on the same connection
        with pytest.raises(HTTPClientError, match="already released"):
            await first.read(10)
        assert await second.read(10) == b"body"


async def test_header_outside_latin1_is_refused(pool: ConnectionPool) -> None:
    async with RawServer(answer(ok(b""))) as srv:
        with pytest.raises(HTTPClientError, match="ISO-8859-1"):
            await pool.request(Origin.parse(srv.url), {"X-Name": "caf\u00e9 \u2603"}, b"")
