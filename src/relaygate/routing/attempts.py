"""One upstream attempt, non-streaming or streaming, up to the point where it is committed.

A non-stream attempt is committed when a full, parseable ``chat.completion`` arrived. A
stream attempt is committed when the first content chunk arrived (or a finish_reason /
``[DONE]`` with no content): until then failover is still invisible to the client, so the
events read so far are held back in ``OpenedStream.buffered``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson

from relaygate.config.schema import DeploymentConfig
from relaygate.errors import ErrorClass, UpstreamError, UpstreamTimeoutError
from relaygate.protocols.openai import ChatRequest, Usage, usage_from
from relaygate.protocols.openai_stream import ChunkKind, StreamWatch
from relaygate.protocols.sse import SSEDecoder, SSEEvent
from relaygate.providers.base import Provider
from relaygate.providers.errors import classify_http_error, refused_input
from relaygate.providers.transport import UpstreamResponse

__all__ = [
    "Completion",
    "OpenedStream",
    "attempt_completion",
    "attempt_stream",
    "content_part_path",
    "hold_stream",
    "name_refused_field",
    "stream_error",
    "within_first_token",
]

# OpenAI content-part types by what an upstream refuses (``providers.errors.refused_input``).
_OPENAI_PARTS = {"image": ("image_url",), "audio": ("input_audio",), "video": ("video_url",)}
_PLAIN_PARTS = ("text", "image_url", "input_audio")


@dataclass(slots=True)
class Completion:
    body: bytes
    usage: Usage | None
    finish_reason: str | None


@dataclass(slots=True)
class OpenedStream:
    """A committed upstream stream: replay ``buffered``, then keep reading ``chunks``."""

    resp: UpstreamResponse
    chunks: AsyncIterator[bytes]
    decoder: SSEDecoder
    watch: StreamWatch
    buffered: list[tuple[SSEEvent, ChunkKind]] = field(default_factory=list)
    ended: bool = False  # upstream body already fully read during the opening phase


def stream_error(err: dict[str, Any]) -> UpstreamError:
    """An in-band stream error event, classified as if it had been an HTTP error."""
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return classify_http_error(status, {}, orjson.dumps({"error": err}))


def content_part_path(data: Any, match: Callable[[str], bool]) -> str | None:
    """``messages[i].content[j].type`` of the first content part whose type ``match``es, in a
    request body with a ``messages`` list (OpenAI and Anthropic alike); None when none does."""
    messages = data.get("messages") if isinstance(data, dict) else None
    for i, msg in enumerate(messages if isinstance(messages, list) else []):
        content = msg.get("content") if isinstance(msg, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and match(kind):
                return f"messages[{i}].content[{j}].type"
    return None


def name_refused_field(err: UpstreamError, req: ChatRequest) -> None:
    """Set ``err.param`` to the request field an ``unsupported`` upstream answer refuses (the
    content part, or ``tools`` / ``tool_choice``), so the client's 400 can name it."""
    what = refused_input(err)
    if what is None or err.param is not None:
        return
    if what in ("tools", "tool_choice"):
        err.param = what
        return
    try:
        data = req.data or orjson.loads(req.body)
    except orjson.JSONDecodeError:
        return
    types = _OPENAI_PARTS.get(what)
    err.param = content_part_path(
        data, (lambda t: t in types) if types else (lambda t: t not in _PLAIN_PARTS)
    )


async def _send(
    provider: Provider, dep: DeploymentConfig, req: ChatRequest, *, stream_usage: bool, region: str | None
) -> UpstreamResponse:
    try:
        return await provider.chat(dep, req, stream_usage=stream_usage, region=region)
    except UpstreamError as err:
        if err.error_class is ErrorClass.UNSUPPORTED:
            name_refused_field(err, req)
        raise


async def attempt_completion(
    provider: Provider, dep: DeploymentConfig, req: ChatRequest, *, region: str | None = None
) -> Completion:
    resp = await _send(provider, dep, req, stream_usage=False, region=region)
    try:
        body = await resp.read()
    finally:
        resp.release()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(
            "upstream returned a body that is not JSON",
            error_class=ErrorClass.MALFORMED,
            upstream_status=resp.status,
            upstream_body=body[:2000],
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            raise stream_error(data["error"])
        raise UpstreamError(
            "upstream response has no choices",
            error_class=ErrorClass.MALFORMED,
            upstream_status=resp.status,
            upstream_body=body[:2000],
        )
    finish = None
    if data["choices"] and isinstance(data["choices"][0], dict):
        finish = data["choices"][0].get("finish_reason")
    return Completion(body=body, usage=usage_from(data.get("usage")), finish_reason=finish)


async def attempt_stream(
    provider: Provider,
    dep: DeploymentConfig,
    req: ChatRequest,
    *,
    stream_usage: bool,
    region: str | None = None,
) -> OpenedStream:
    """Open a stream and read until it may be committed, within the provider's
    ``first_token_ms``. Raises ``UpstreamError`` before that."""

    async def open_and_hold() -> OpenedStream:
        resp = await _send(provider, dep, req, stream_usage=stream_usage, region=region)
        opened = OpenedStream(resp, resp.iter_chunks(), SSEDecoder(), StreamWatch())
        return await hold_stream(opened, lambda chunk, events: _take(opened, events))

    return await within_first_token(provider.timeouts.first_token_ms, open_and_hold())


async def within_first_token(limit_ms: int | None, opening: Coroutine[Any, Any, T]) -> T:
    """Await ``opening`` (send a stream request, then hold the stream until its first content)
    within ``limit_ms``, a provider's ``timeouts.first_token_ms`` (None: no limit). The clock
    starts before the request is sent, so a slow connect or header wait counts too, and it stops
    when the stream is committed: once content flows only ``idle_ms`` applies. Past the limit
    the request is cancelled (its connection closed, never reused) and ``UpstreamTimeoutError``
    is raised, which fails over like any timeout before the first content.
    """
    if limit_ms is None:
        return await opening
    try:
        async with asyncio.timeout(limit_ms / 1000):
            return await opening
    except TimeoutError as exc:
        raise UpstreamTimeoutError(f"no content within first_token_ms ({limit_ms} ms)") from exc


class _Held(Protocol):
    resp: UpstreamResponse
    chunks: AsyncIterator[bytes]
    decoder: SSEDecoder
    ended: bool


H = TypeVar("H", bound=_Held)
T = TypeVar("T")


async def hold_stream(opened: H, take: Callable[[bytes | None, list[SSEEvent]], bool]) -> H:
    """Read ``opened``'s upstream until ``take(chunk, events)`` says it may be committed (the
    chunk is None for the decoder's unterminated tail at the end). Until then an error or a cut
    is still a failover, invisible to the client: raises ``UpstreamError`` (``STREAM_CUT`` when
    the body ends first) and closes the upstream response on any exception."""
    try:
        async for chunk in opened.chunks:
            if take(chunk, opened.decoder.feed(chunk)):
                return opened
        opened.ended = True
        tail = opened.decoder.finish()
        if take(None, [tail] if tail is not None else []):
            return opened
        raise UpstreamError(
            "upstream stream ended before any content",
            error_class=ErrorClass.STREAM_CUT,
            upstream_status=opened.resp.status,
        )
    except BaseException:
        opened.resp.close()
        raise


def _take(opened: OpenedStream, events: list[SSEEvent]) -> bool:
    """Buffer ``events``; True once the stream may be committed."""
    watch = opened.watch
    for ev in events:
        kind = watch.inspect(ev)
        if kind is ChunkKind.ERROR:
            raise stream_error(watch.error or {})
        opened.buffered.append((ev, kind))
    return watch.content_seen or watch.done
