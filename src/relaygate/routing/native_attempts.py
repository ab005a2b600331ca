"""Attempts for ``/v1/messages`` over a route that may mix Anthropic and other deployments.

``messages_attempt`` builds the one ``attempt(provider, deployment)`` the failover loop runs:
an Anthropic deployment gets the client's own body (``NativeRequest``, the pass-through), any
other the translated OpenAI request as ``attempt_completion`` / ``attempt_stream`` send it. So one
request can fail over from a pass-through to a translated deployment and back; the caller tells
the results apart by type (``NativeCompletion`` / ``NativeStream`` vs ``Completion`` /
``OpenedStream``). A request the OpenAI view cannot carry (``untranslatable``) raises that
``InvalidRequestError`` on non-Anthropic deployments: the router moves on, and answers the 400
naming the field when no deployment could take it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from relaygate.config.schema import DeploymentConfig
from relaygate.errors import ErrorClass, InvalidRequestError, UpstreamError
from relaygate.protocols.anthropic import finish_reason_for
from relaygate.protocols.openai import ChatRequest, Usage
from relaygate.protocols.sse import SSEDecoder
from relaygate.providers.anthropic import AnthropicMessagesProvider, parse_message
from relaygate.providers.anthropic_passthrough import EventKind, NativeStreamWatch, native_body, native_usage
from relaygate.providers.base import Provider
from relaygate.providers.errors import refused_input
from relaygate.providers.transport import UpstreamResponse
from relaygate.routing.attempts import (
    attempt_completion,
    attempt_stream,
    content_part_path,
    hold_stream,
    within_first_token,
)

__all__ = [
    "NativeCompletion",
    "NativeRequest",
    "NativeStream",
    "attempt_native_completion",
    "attempt_native_stream",
    "messages_attempt",
    "speaks_anthropic",
]


@dataclass(slots=True, frozen=True)
class NativeRequest:
    """The client's Messages request as received: ``raw`` body bytes, whether it streams, and the
    client headers to forward (``anthropic-beta``)."""

    raw: bytes
    stream: bool
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class NativeCompletion:
    """A pass-through Message: ``body`` is the upstream's bytes, unchanged."""

    body: bytes
    message: dict[str, Any]
    usage: Usage | None
    stop_reason: str | None

    @property
    def finish_reason(self) -> str | None:
        return finish_reason_for(self.stop_reason)


@dataclass(slots=True)
class NativeStream:
    """A committed pass-through stream: send ``buffered`` (raw upstream bytes read while opening),
    then keep reading ``chunks``; ``decoder`` and ``watch`` follow the events without changing them."""

    resp: UpstreamResponse
    chunks: AsyncIterator[bytes]
    decoder: SSEDecoder
    watch: NativeStreamWatch
    buffered: list[bytes] = field(default_factory=list)
    ended: bool = False


def speaks_anthropic(provider: Provider) -> bool:
    return isinstance(provider, AnthropicMessagesProvider)


async def attempt_native_completion(
    provider: AnthropicMessagesProvider, dep: DeploymentConfig, req: NativeRequest, *, region: str | None
) -> NativeCompletion:
    body = native_body(req.raw, dep.model)
    resp = await provider.post_messages(body, region=region, extra_headers=req.headers)
    try:
        raw = await resp.read()
    finally:
        resp.release()
    msg = parse_message(raw)  # raises UpstreamError for a non-Message or an in-band error
    stop = msg.get("stop_reason")
    usage = native_usage(msg.get("usage"))
    return NativeCompletion(raw, msg, usage, stop if isinstance(stop, str) else None)


async def attempt_native_stream(
    provider: AnthropicMessagesProvider, dep: DeploymentConfig, req: NativeRequest, *, region: str | None
) -> NativeStream:
    """Open the stream and hold it until the first content block (or the end of the message),
    within the provider's ``first_token_ms``: until then an error, a cut or that timeout is
    still a failover, invisible to the client."""
    body = native_body(req.raw, dep.model)

    async def open_and_hold() -> NativeStream:
        resp = await provider.post_messages(body, region=region, extra_headers=req.headers)
        opened = NativeStream(resp, resp.iter_chunks(), SSEDecoder(), NativeStreamWatch())

        def take(chunk: bytes | None, events: list[Any]) -> bool:
            if chunk is not None:
                opened.buffered.append(chunk)  # relayed as the upstream sent it
            return _committed(opened, events)

        return await hold_stream(opened, take)

    return await within_first_token(provider.timeouts.first_token_ms, open_and_hold())


def _committed(opened: NativeStream, events: list[Any]) -> bool:
    watch = opened.watch
    for ev in events:
        if watch.inspect(ev) is EventKind.ERROR:
            assert watch.error is not None
            raise watch.error
    return watch.content_seen or watch.done or watch.stop_reason is not None


Attempt = Callable[[Provider, DeploymentConfig], Awaitable[Any]]


def messages_attempt(
    native: NativeRequest,
    translated: ChatRequest,
    untranslatable: InvalidRequestError | None,
    *,
    region: str | None,
    stream_usage: bool = True,
) -> Attempt:
    """The attempt for one ``/v1/messages`` request. ``translated`` is the OpenAI view (for
    non-Anthropic deployments); ``untranslatable`` the reason it cannot be sent to them, if any."""

    async def attempt(provider: Provider, dep: DeploymentConfig) -> Any:
        if isinstance(provider, AnthropicMessagesProvider):
            if native.stream:
                return await attempt_native_stream(provider, dep, native, region=region)
            return await attempt_native_completion(provider, dep, native, region=region)
        if untranslatable is not None:
            raise untranslatable
        try:
            if native.stream:
                return await attempt_stream(
                    provider, dep, translated, stream_usage=stream_usage, region=region
                )
            return await attempt_completion(provider, dep, translated, region=region)
        except UpstreamError as err:
            if err.error_class is ErrorClass.UNSUPPORTED:
                _name_native_field(err, native)
            raise

    return attempt


# Anthropic block types by what an upstream refuses; the translated request's indexes differ
# (a top-level ``system`` becomes messages[0]), so the client's field is found in its own body.
_ANTHROPIC_BLOCKS = {"image": ("image",), "content": ("document",)}


def _name_native_field(err: UpstreamError, native: NativeRequest) -> None:
    what = refused_input(err)
    if what in ("tools", "tool_choice"):
        err.param = what
        return
    types = _ANTHROPIC_BLOCKS.get(what or "")
    try:
        data = orjson.loads(native.raw)
    except orjson.JSONDecodeError:
        return
    err.param = content_part_path(data, lambda t: t in types) if types else None
