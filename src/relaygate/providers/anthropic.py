"""Adapter for Anthropic Messages upstreams (``protocol: anthropic``).

``POST {base_url}/messages`` with ``x-api-key`` and ``anthropic-version``
(https://docs.anthropic.com/en/api/messages). The gateway's OpenAI-shaped request is translated
by ``openai_request_to_anthropic``; the answer comes back as an ``UpstreamResponse`` whose body
is OpenAI-shaped, so routing and the ledger see what an OpenAI-compatible upstream would send:
a ``chat.completion`` from ``read()``, or ``data: {chunk}`` events ending in ``data: [DONE]``
from ``iter_chunks()``, translated event by event as the Anthropic stream arrives. That is for
requests that arrive on the OpenAI wire; ``/v1/messages`` requests skip both translations and use
``post_messages`` with the client's own body (``anthropic_passthrough.py``).

Error classification (https://docs.anthropic.com/en/api/errors) runs a small Anthropic pre-check
before the shared ``classify_http_error``: 529 ``overloaded_error`` -> server_error (retry),
429 ``rate_limit_error`` -> rate_limited, and a 403 that is a region block -> region_blocked.
Anthropic's geo block is a bare ``{"error": {"type": "forbidden", "message": "Request not
allowed"}}`` (reported in anthropics/claude-code#1613 and anthropics/anthropic-sdk-typescript#457);
through Bedrock it reads "Access to Anthropic models is not allowed from unsupported countries,
regions, or territories".
"""

from __future__ import annotations

import logging
import re
import time

import orjson

from relaygate.config.schema import AnthropicProvider, DeploymentConfig, Timeouts
from relaygate.errors import ErrorClass, UpstreamError
from relaygate.protocols.anthropic import ERROR_STATUS
from relaygate.protocols.openai import ChatRequest
from relaygate.protocols.sse import SSEDecoder, SSEEvent
from relaygate.protocols.translate_anthropic import (
    AnthropicToOpenAIStream,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)
from relaygate.providers.errors import classify_http_error
from relaygate.providers.translated import TranslatedResponse, credential_headers, out_headers
from relaygate.providers.transport import Transport, UpstreamResponse

__all__ = ["AnthropicMessagesProvider", "AnthropicStreamDecoder", "classify_anthropic_error", "parse_message"]

log = logging.getLogger("relaygate.providers")

_DONE = b"data: [DONE]\n\n"
_REGION = re.compile(
    r"request not allowed|not allowed from unsupported countr|unsupported countr|"
    r"not available in your (?:country|region)"
)


def _fields(body: bytes) -> tuple[str, str]:
    """(error type, lower-cased message) of an Anthropic error body, or ("", text)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", body[:2000].decode("utf-8", "replace").lower()
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return "", ""
    return str(err.get("type") or ""), str(err.get("message") or "").lower()


def classify_anthropic_error(status: int, headers: dict[str, str], body: bytes) -> UpstreamError:
    """An Anthropic non-2xx answer (or in-band ``error`` event) -> a classified ``UpstreamError``.

    ``headers`` keys are lower-case. Falls back to ``classify_http_error`` for everything the
    pre-check does not decide, keeping its Retry-After and body handling.
    """
    base = classify_http_error(status, headers, body)
    kind, message = _fields(body)
    cls: ErrorClass | None = None
    if status == 529 or kind == "overloaded_error":
        cls = ErrorClass.SERVER_ERROR
    elif status == 403 and kind in ("permission_error", "forbidden", "") and _REGION.search(message):
        cls = ErrorClass.REGION_BLOCKED
    elif status == 429 and kind == "rate_limit_error":
        cls = ErrorClass.RATE_LIMITED
    if cls is None or cls is base.error_class:
        return base
    return UpstreamError(
        f"upstream {status}: {cls.value}" + (f": {message[:200]}" if message else ""),
        error_class=cls,
        upstream_status=status,
        upstream_body=body,
        retry_after_s=base.retry_after_s,
        upstream_headers=headers,
    )


class AnthropicStreamDecoder:
    """Anthropic SSE bytes -> OpenAI SSE bytes. ``data: [DONE]`` is sent only after
    ``message_stop``, so a cut upstream stays visibly cut."""

    def __init__(self, stream: AnthropicToOpenAIStream) -> None:
        self._stream = stream
        self._sse = SSEDecoder()

    def feed(self, raw: bytes) -> bytes:
        return self._translate(self._sse.feed(raw))

    def finish(self) -> bytes:
        tail = self._sse.finish()
        out = self._translate([tail] if tail is not None else [])
        return out + _DONE if self._stream.done else out

    def _translate(self, events: list[SSEEvent]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            if ev.data is None:
                continue
            try:
                data = orjson.loads(ev.data)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(
                    "Anthropic sent a malformed stream event",
                    error_class=ErrorClass.MALFORMED,
                    upstream_status=200,
                    upstream_body=ev.data[:2000],
                ) from exc
            if not isinstance(data, dict):
                raise UpstreamError(
                    "Anthropic sent a non-object stream event",
                    error_class=ErrorClass.MALFORMED,
                    upstream_status=200,
                )
            if data.get("type") == "error" or ev.event == "error":
                err = data.get("error")
                status = ERROR_STATUS.get(str(err.get("type")), 500) if isinstance(err, dict) else 500
                raise classify_anthropic_error(status, {}, ev.data)
            out.extend(b"data: " + orjson.dumps(c) + b"\n\n" for c in self._stream.feed(ev.event, data))
        return b"".join(out)


class AnthropicMessagesProvider:
    """One Anthropic account; a ``Provider`` for routing. ``base_url`` ends before ``/messages``."""

    def __init__(self, name: str, config: AnthropicProvider) -> None:
        self.name = name
        self.config = config
        self.base_url = config.base_url
        self.transport = Transport(config.timeouts, config.max_connections)
        self._regional = {k.upper(): v.rstrip("/") for k, v in config.region_base_urls.items()}
        self._headers = {
            "content-type": "application/json",
            "anthropic-version": config.anthropic_version,
            **config.headers,
        }
        self._headers.update(credential_headers(name, config.api_key_env, "x-api-key", ""))

    @property
    def timeouts(self) -> Timeouts:
        """This provider's upstream timeouts (milliseconds)."""
        return self.transport.timeouts

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    def build_body(self, deployment: DeploymentConfig, request: ChatRequest) -> bytes:
        """The Messages body for ``request`` on ``deployment`` (pure). Raises ``InvalidRequestError``."""
        data = request.data or orjson.loads(request.body)
        return orjson.dumps(
            openai_request_to_anthropic(
                data, model=deployment.model, default_max_tokens=self.config.default_max_tokens
            )
        )

    async def post_messages(
        self, body: bytes, *, region: str | None = None, extra_headers: dict[str, str] | None = None
    ) -> UpstreamResponse:
        """POST a Messages ``body`` as it is (credentials, ``anthropic-version`` and config headers
        added, ``extra_headers`` such as a forwarded ``anthropic-beta`` over them); a 2xx response
        is returned unread. Raises ``UpstreamError`` (non-2xx classified by
        ``classify_anthropic_error``). Used by ``chat`` and by the same-protocol pass-through."""
        base = (
            self._regional.get(region.upper(), self.base_url) if region and self._regional else self.base_url
        )
        headers = {**self._headers, **extra_headers} if extra_headers else self._headers
        resp = await self.transport.post(f"{base}/messages", headers, body)
        if resp.status >= 300:
            try:
                err_body = await resp.read(1024 * 1024)
            finally:
                resp.release()
            raise classify_anthropic_error(resp.status, resp.headers, err_body)
        return resp

    async def chat(
        self,
        deployment: DeploymentConfig,
        request: ChatRequest,
        *,
        stream_usage: bool,
        region: str | None = None,
    ) -> UpstreamResponse:
        resp = await self.post_messages(self.build_body(deployment, request), region=region)
        created = int(time.time())
        if request.stream:
            stream = AnthropicToOpenAIStream(
                include_usage=stream_usage or request.include_usage, created=created
            )
            headers = out_headers(resp.headers, "text/event-stream")
            return TranslatedResponse(
                resp.status, headers, inner=resp, decoder=AnthropicStreamDecoder(stream)
            )
        try:
            raw = await resp.read()
        finally:
            resp.release()
        translated = orjson.dumps(anthropic_response_to_openai(parse_message(raw), created=created))
        return TranslatedResponse(resp.status, out_headers(resp.headers, "application/json"), body=translated)


def parse_message(raw: bytes) -> dict[str, object]:
    """Parse a 2xx Messages body; an in-band error object is classified like an HTTP error."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(
            "Anthropic returned a body that is not JSON",
            error_class=ErrorClass.MALFORMED,
            upstream_status=200,
            upstream_body=raw[:2000],
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        if isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict):
            raise classify_anthropic_error(ERROR_STATUS.get(str(data["error"].get("type")), 500), {}, raw)
        raise UpstreamError(
            "Anthropic returned a body that is not a Message",
            error_class=ErrorClass.MALFORMED,
            upstream_status=200,
            upstream_body=raw[:2000],
        )
    return data
