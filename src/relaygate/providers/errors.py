"""Classify an upstream HTTP error into an ``UpstreamError`` with an ``ErrorClass``.

The patterns live in one table each, with sources:
- OpenAI error codes: https://platform.openai.com/docs/guides/error-codes (429 "Rate limit
  reached" vs 429 "You exceeded your current quota" ``insufficient_quota``; 403 "Country,
  region, or territory not supported" ``unsupported_country_region_territory``; 400
  ``context_length_exceeded``; 400 ``content_policy_violation``).
- Google Gemini troubleshooting: 400 FAILED_PRECONDITION "User location is not supported for
  the API use" (https://ai.google.dev/gemini-api/docs/troubleshooting).
- Anthropic errors: 529 ``overloaded_error``; 403 ``permission_error``
  (https://docs.anthropic.com/en/api/errors); unsupported-region messages.
- RFC 7725: 451 Unavailable For Legal Reasons. RFC 9110 10.2.3: Retry-After.
- llama.cpp server (the embedded local model), ``tools/server/server-common.cpp``:
  ``oaicompat_chat_params_parse`` throws "image input is not supported - hint: if this is
  unexpected, you may need to provide the mmproj" (and the same for audio, and "tools param
  requires --jinja flag") as ``std::runtime_error``, which the server answers as HTTP 500
  ``server_error`` although the request, not the server, is the cause; ``format_error_response``
  answers ``not_supported_error`` with 501 and ``exceed_context_size_error`` with 400.
  Recorded bodies: ``tests/fixtures/llamacpp/``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson

from relaygate.errors import ErrorClass, UpstreamError

__all__ = ["REGION_BLOCK_PATTERNS", "classify_http_error", "parse_retry_after", "refused_input"]

# Body text (lower-cased) that marks a region / country block, whatever the status.
REGION_BLOCK_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"unsupported_country_region_territory"),  # OpenAI error code
    re.compile(r"country, region, or territory not supported"),  # OpenAI message
    re.compile(r"user location is not supported"),  # Google Gemini
    re.compile(r"not (?:available|supported) in your (?:country|region|location|territory)"),
    re.compile(r"(?:country|region|territory|location) (?:is )?not supported"),
    re.compile(r"unsupported (?:country|region|location)"),
)
# Quota / billing exhaustion. Specific phrases only: OpenAI's ordinary rate-limit message links
# to the billing page, so the bare word "billing" must not match. Anthropic reports an empty
# credit balance as a 400 ("Your credit balance is too low"), hence checked on every 4xx.
_QUOTA = re.compile(
    r"insufficient_quota|exceeded your current quota|billing_hard_limit_reached|billing_not_active|"
    r"credit balance is too low|quota exceeded|arrearage|insufficient balance|insufficient_balance|"
    r"payment required"
)
_CONTEXT = re.compile(
    r"context_length_exceeded|maximum context length|context window|"
    r"prompt is too long|too many tokens|input is too long|exceeds the context|"
    r"exceed_context_size|exceeds the available context"  # llama.cpp server (the embedded model)
)
# This deployment cannot take this input (a text-only model sent an image, a feature the server
# was started without); another deployment may. Checked on 4xx and 5xx: llama.cpp says it with 500.
_UNSUPPORTED = re.compile(
    r"(?:image|audio|video|multimodal) input is not supported|"  # llama.cpp server
    r"(?:tools|tool_choice) param requires --jinja flag|"  # llama.cpp server without --jinja
    r"not_supported_error|"  # llama.cpp server's 501 type
    r"unsupported content\[\]\.type|"  # llama.cpp server: a part type other than text/image/audio
    r"image_url is only supported by certain models"  # OpenAI, image sent to a text-only model
)
# What an unsupported answer refuses, protocol-neutral: "image", "audio", "tools", "tool_choice".
_REFUSED = re.compile(
    r"\b(image|audio|video|tools|tool_choice)(?:_url)? (?:input|param|is only)|unsupported (content)\[\]"
)
_CONTENT = re.compile(
    r"content_policy_violation|content_filter|content management policy|"
    r"safety system|data_inspection_failed"
)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 10.2.3).
    Also reads ``retry-after-ms`` style values when given as float seconds. None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_fields(body: bytes) -> tuple[str, str]:
    """(code/type text, message text), lower-cased, from an OpenAI/Anthropic/Gemini error body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", body[:2000].decode("utf-8", "replace").lower()
    if isinstance(data, list) and data:
        data = data[0]  # Gemini streams errors as a one-element array
    err = data.get("error", data) if isinstance(data, dict) else {}
    if not isinstance(err, dict):
        return "", str(err).lower()
    code = " ".join(str(err.get(k, "")) for k in ("code", "type", "status"))
    return code.lower(), str(err.get("message", "")).lower()


def classify_http_error(status: int, headers: dict[str, str], body: bytes) -> UpstreamError:
    """Map an upstream non-2xx response to an ``UpstreamError``.

    ``headers`` keys must be lower-case. The result keeps status, body and Retry-After so the
    failover loop can decide, and so a client error can be relayed unchanged.
    """
    code, message = _error_fields(body)
    text = f"{code} {message}"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None and headers.get("retry-after-ms"):
        ms = parse_retry_after(headers.get("retry-after-ms"))
        retry_after = ms / 1000 if ms is not None else None

    def err(cls: ErrorClass, what: str) -> UpstreamError:
        return UpstreamError(
            f"upstream {status}: {what}" + (f": {message[:200]}" if message else ""),
            error_class=cls,
            upstream_status=status,
            upstream_body=body,
            retry_after_s=retry_after,
            upstream_headers=headers,
        )

    if status == 451 or any(p.search(text) for p in REGION_BLOCK_PATTERNS):
        return err(ErrorClass.REGION_BLOCKED, "region blocked")
    if status == 402 or (400 <= status < 500 and _QUOTA.search(text)):
        return err(ErrorClass.QUOTA_EXHAUSTED, "quota or billing exhausted")
    if status == 429:
        return err(ErrorClass.RATE_LIMITED, "rate limited")
    if _UNSUPPORTED.search(text):
        return err(ErrorClass.UNSUPPORTED, "this deployment cannot serve this input")
    if status >= 500:
        return err(ErrorClass.SERVER_ERROR, "server error")
    if status in (401, 403):
        return err(ErrorClass.AUTH, "provider credential refused")
    if status in (400, 413, 422) and _CONTEXT.search(text):
        return err(ErrorClass.CONTEXT_LENGTH, "context length exceeded")
    if status in (400, 403, 422) and _CONTENT.search(text):
        return err(ErrorClass.CONTENT_POLICY, "content policy rejection")
    if status in (408,):
        return err(ErrorClass.TIMEOUT, "upstream request timeout")
    return err(ErrorClass.CLIENT_ERROR, "client error")


def refused_input(err: UpstreamError) -> str | None:
    """What an ``unsupported`` upstream answer refuses: ``"image"``, ``"audio"``, ``"video"``,
    ``"tools"``, ``"tool_choice"`` or ``"content"`` (a content part of another type); None when
    the message does not say."""
    if err.error_class is not ErrorClass.UNSUPPORTED or not err.upstream_body:
        return None
    code, message = _error_fields(err.upstream_body)
    found = _REFUSED.search(f"{message} {code}")
    return (found.group(1) or found.group(2)) if found else None
