"""Responses of adapters that translate another wire format into OpenAI's, and shared headers.

The router and the stream relay only speak OpenAI Chat Completions; an Anthropic or Gemini
adapter hands them a ``TranslatedResponse``: a fixed translated body (non-stream), or the
upstream response piped through a ``StreamDecoder`` (upstream bytes in, OpenAI SSE bytes out,
incrementally). One place for what both adapters need, so each adapter keeps only its format.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Protocol

from relaygate.providers.transport import UpstreamResponse

__all__ = ["StreamDecoder", "TranslatedResponse", "credential_headers", "out_headers"]

log = logging.getLogger("relaygate.providers")


class StreamDecoder(Protocol):
    def feed(self, raw: bytes) -> bytes:
        """Upstream bytes -> OpenAI SSE bytes (possibly empty). Raises ``UpstreamError``."""
        ...

    def finish(self) -> bytes:
        """At end of the upstream body: what is left (``data: [DONE]`` only if it completed)."""
        ...


class TranslatedResponse(UpstreamResponse):
    """An ``UpstreamResponse`` whose body is already OpenAI-shaped."""

    # The base class's aiohttp-facing slots stay unset: every method using them is overridden.
    __slots__ = ("_body", "_decoder", "_inner")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        *,
        body: bytes | None = None,
        inner: UpstreamResponse | None = None,
        decoder: StreamDecoder | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self._inner = inner
        self._decoder = decoder

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        if self._body is not None:
            return self._body[:limit]
        return b"".join([chunk async for chunk in self.iter_chunks()])[:limit]

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            yield self._body
            return
        assert self._inner is not None and self._decoder is not None
        async for raw in self._inner.iter_chunks():
            out = self._decoder.feed(raw)
            if out:
                yield out
        tail = self._decoder.finish()
        if tail:
            yield tail

    def release(self) -> None:
        if self._inner is not None:
            self._inner.release()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


def out_headers(headers: dict[str, str], content_type: str) -> dict[str, str]:
    """Upstream headers minus those describing the untranslated body."""
    drop = ("content-length", "content-type", "content-encoding", "transfer-encoding")
    return {**{k: v for k, v in headers.items() if k not in drop}, "content-type": content_type}


def credential_headers(provider: str, env: str | None, header: str, prefix: str = "") -> dict[str, str]:
    """``{header: prefix + $env}``, or ``{}`` with a warning when the variable is unset."""
    if not env:
        return {}
    key = os.environ.get(env)
    if not key:
        log.warning("provider %s: env var %s is not set; upstream will likely answer 401", provider, env)
        return {}
    return {header: prefix + key}
