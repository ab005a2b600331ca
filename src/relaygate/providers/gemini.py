"""Adapter for the Google Gemini API (``generateContent`` / ``streamGenerateContent?alt=sse``).

The gateway speaks OpenAI Chat Completions inside; this adapter translates the request
(``protocols.translate_gemini``), calls ``POST {base_url}/models/{model}:generateContent`` (or
``:streamGenerateContent?alt=sse``) with the ``x-goog-api-key`` header
(https://ai.google.dev/api/generate-content), and hands routing an ``UpstreamResponse`` whose
body is already OpenAI-shaped: ``read()`` gives ``chat.completion`` JSON, ``iter_chunks()``
gives ``chat.completion.chunk`` SSE ending ``data: [DONE]`` (only when Gemini finished every
candidate, so a cut upstream stream still reads as cut).

Error classes (https://ai.google.dev/gemini-api/docs/troubleshooting, and
https://ai.google.dev/gemini-api/docs/rate-limits for 429 details):
- 429 RESOURCE_EXHAUSTED: rate_limited; quota_exhausted when a QuotaFailure names a per-day
  quota, or, without such details, when the message speaks of billing, prepaid credits or a
  daily limit (Gemini's per-minute message also says "quota", so that word alone does not
  count). ``RetryInfo`` ``retryDelay`` becomes Retry-After when no header gives one.
- 400 FAILED_PRECONDITION "User location is not supported": region_blocked.
- 400 INVALID_ARGUMENT: client_error, except "API key not valid" (auth) and "input token
  count ... exceeds" (context_length). 401/403 PERMISSION_DENIED: auth.
- 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED: server_error.
- A prompt blocked by safety (``promptFeedback.blockReason``): content_policy.
A client_error's body is rewritten into OpenAI's error shape so the client reads a familiar
error.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from relaygate.config.schema import DeploymentConfig, Timeouts
from relaygate.config.schema import GeminiProvider as GeminiConfig
from relaygate.errors import ErrorClass, UpstreamError
from relaygate.protocols.gemini import generate_url
from relaygate.protocols.openai import ChatRequest
from relaygate.protocols.sse import SSEDecoder
from relaygate.protocols.translate_gemini import (
    GeminiToOpenAIStream,
    gemini_response_to_openai,
    openai_request_to_gemini,
)
from relaygate.providers.errors import classify_http_error
from relaygate.providers.translated import TranslatedResponse, credential_headers, out_headers
from relaygate.providers.transport import Transport, UpstreamResponse

__all__ = ["GeminiAdapter", "GeminiStreamDecoder", "classify_gemini_error"]

log = logging.getLogger("relaygate.providers")

_DONE = b"data: [DONE]\n\n"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_CONTEXT = re.compile(r"input token count.*exceeds|exceeds the maximum number of tokens")
_API_KEY = re.compile(r"api key not valid|api_key_invalid|api key expired|api_key_expired")
# Without QuotaFailure details: billing/prepay wording means money, not a per-minute limit
# ("Resource has been exhausted (e.g. check quota)." is Gemini's plain rate-limit message).
_QUOTA_WORDS = re.compile(r"billing|prepay|credits|per ?day|daily")


def _google_error(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(data, list) and data:
        data = data[0]  # non-SSE streams answer errors as a one-element array
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def _details(err: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    out = err.get("details")
    return (
        [d for d in out if isinstance(d, dict) and str(d.get("@type", "")).endswith(kind)]
        if isinstance(out, list)
        else []
    )


def _retry_delay(err: dict[str, Any]) -> float | None:
    for info in _details(err, "RetryInfo"):
        m = _DURATION.match(str(info.get("retryDelay", "")))
        if m:
            return float(m.group(1))
    return None


def classify_gemini_error(status: int, headers: dict[str, str], body: bytes) -> UpstreamError:
    """An ``UpstreamError`` for a Gemini non-2xx answer (``headers`` lower-case).

    Gemini-specific knowledge first (see the module docstring), then the shared
    ``classify_http_error`` table (region-block phrases, 5xx, 401/403).
    """
    err = _google_error(body)
    message = str(err.get("message", ""))
    text = f"{err.get('status', '')} {message}".lower()
    base = classify_http_error(status, headers, body)
    if base.retry_after_s is None:
        base.retry_after_s = _retry_delay(err)
    cls = base.error_class
    if status == 429:
        violations = [v for q in _details(err, "QuotaFailure") for v in q.get("violations") or []]
        quota_ids = " ".join(str(v.get("quotaId", "")) for v in violations if isinstance(v, dict))
        if quota_ids:
            cls = ErrorClass.QUOTA_EXHAUSTED if "PerDay" in quota_ids else ErrorClass.RATE_LIMITED
        elif _details(err, "RetryInfo"):
            cls = ErrorClass.RATE_LIMITED
        else:
            cls = ErrorClass.QUOTA_EXHAUSTED if _QUOTA_WORDS.search(text) else ErrorClass.RATE_LIMITED
    elif status == 400 and _API_KEY.search(text):
        cls = ErrorClass.AUTH
    elif status == 400 and _CONTEXT.search(text):
        cls = ErrorClass.CONTEXT_LENGTH
    if cls is not base.error_class:
        base = UpstreamError(
            f"upstream {status}: {cls.value}" + (f": {message[:200]}" if message else ""),
            error_class=cls,
            upstream_status=status,
            upstream_body=body,
            retry_after_s=base.retry_after_s,
            upstream_headers=headers,
        )
    if cls is ErrorClass.CLIENT_ERROR:
        base.upstream_body = orjson.dumps(
            {
                "error": {
                    "message": message or f"Gemini API error {status}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": err.get("status") or None,
                }
            }
        )
    return base


class GeminiStreamDecoder:
    """Gemini SSE bytes -> OpenAI ``chat.completion.chunk`` SSE bytes, incrementally (pure).

    ``feed(bytes)`` may split events anywhere (even inside a UTF-8 sequence): events are cut at
    blank lines and parsed whole. ``finish()`` flushes a last unterminated event, the usage
    chunk, and ``[DONE]`` when every candidate finished. Raises ``UpstreamError``: malformed
    event JSON (malformed), an in-band ``{"error": ...}`` event (classified), a blocked prompt
    (content_policy).
    """

    def __init__(self, *, model: str, include_usage: bool) -> None:
        self._sse = SSEDecoder()
        self.stream = GeminiToOpenAIStream(model=model, include_usage=include_usage)

    def _events(self, datas: list[bytes]) -> bytes:
        out: list[bytes] = []
        for data in datas:
            if not data.strip():
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(
                    "Gemini sent a malformed stream event",
                    error_class=ErrorClass.MALFORMED,
                    upstream_status=200,
                    upstream_body=data[:2000],
                ) from exc
            if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
                code = obj["error"].get("code")
                status = code if isinstance(code, int) and 400 <= code < 600 else 500
                raise classify_gemini_error(status, {}, data)
            if not isinstance(obj, dict):
                raise UpstreamError(
                    "Gemini sent a non-object stream event",
                    error_class=ErrorClass.MALFORMED,
                    upstream_status=200,
                )
            out.extend(b"data: " + orjson.dumps(c) + b"\n\n" for c in self.stream.feed(obj))
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        return self._events([ev.data for ev in self._sse.feed(chunk) if ev.data is not None])

    def finish(self) -> bytes:
        tail = self._sse.finish()
        out = self._events([tail.data] if tail is not None and tail.data is not None else [])
        if not self.stream.finished:
            return out  # no finish_reason: leave the stream visibly cut (no [DONE])
        out += b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in self.stream.finish())
        return out + _DONE


class GeminiAdapter:
    """One Gemini API account (``protocol: gemini``); a ``Provider`` for routing."""

    def __init__(self, name: str, config: GeminiConfig) -> None:
        self.name = name
        self.config = config
        self.base_url = config.base_url
        self.transport = Transport(config.timeouts, config.max_connections)
        self._regional = {k.upper(): v.rstrip("/") for k, v in config.region_base_urls.items()}
        self._headers = {"content-type": "application/json", **config.headers}
        self._headers.update(credential_headers(name, config.api_key_env, "x-goog-api-key", ""))

    @property
    def timeouts(self) -> Timeouts:
        """This provider's upstream timeouts (milliseconds)."""
        return self.transport.timeouts

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    def build_body(self, request: ChatRequest) -> bytes:
        """The Gemini request body for ``request`` (pure). Raises ``InvalidRequestError``."""
        data = request.data or orjson.loads(request.body)
        return orjson.dumps(openai_request_to_gemini(data))

    async def chat(
        self,
        deployment: DeploymentConfig,
        request: ChatRequest,
        *,
        stream_usage: bool,
        region: str | None = None,
    ) -> UpstreamResponse:
        body = self.build_body(request)
        base = (
            self._regional.get(region.upper(), self.base_url) if region and self._regional else self.base_url
        )
        url = generate_url(base, deployment.model, stream=request.stream)
        resp = await self.transport.post(url, self._headers, body)
        if resp.status >= 300:
            try:
                err_body = await resp.read(1024 * 1024)
            finally:
                resp.release()
            raise classify_gemini_error(resp.status, resp.headers, err_body)
        if request.stream:
            decoder = GeminiStreamDecoder(
                model=deployment.model, include_usage=stream_usage or request.include_usage
            )
            return TranslatedResponse(
                resp.status, out_headers(resp.headers, "text/event-stream"), inner=resp, decoder=decoder
            )
        try:
            raw = await resp.read()
        finally:
            resp.release()
        return TranslatedResponse(
            resp.status, out_headers(resp.headers, "application/json"), body=self._translate(raw, deployment)
        )

    @staticmethod
    def _translate(raw: bytes, deployment: DeploymentConfig) -> bytes:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(
                "Gemini returned a body that is not JSON",
                error_class=ErrorClass.MALFORMED,
                upstream_status=200,
                upstream_body=raw[:2000],
            ) from exc
        if not isinstance(data, dict):
            raise UpstreamError(
                "Gemini returned a non-object body", error_class=ErrorClass.MALFORMED, upstream_status=200
            )
        if isinstance(data.get("error"), dict):
            code = data["error"].get("code")
            raise classify_gemini_error(code if isinstance(code, int) else 500, {}, raw)
        return orjson.dumps(gemini_response_to_openai(data, model=deployment.model))
