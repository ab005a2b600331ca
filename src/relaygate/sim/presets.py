"""Error shapes the simulator answers with: named presets of real provider errors and a default per status.

Every body is OpenAI's error object ``{"error": {"message", "type", "param", "code"}}``
(https://platform.openai.com/docs/guides/error-codes). Each preset names the source of its shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["PRESETS", "ErrorPreset", "PresetName", "default_error_body", "error_body"]

PresetName = Literal[
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "overloaded",
    "region_block_451",
    "region_block_403",
    "context_length",
    "content_policy",
    "bad_request",
    "auth",
]


@dataclass(frozen=True)
class ErrorPreset:
    """One canned upstream error: HTTP status, OpenAI error fields and extra response headers."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def body(self) -> dict[str, Any]:
        """The JSON error body, shape ``{"error": {...}}``."""
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


PRESETS: MappingProxyType[str, ErrorPreset] = MappingProxyType(
    {
        # "429 - Rate limit reached for requests" (error-codes guide); real bodies carry type "requests"
        # or "tokens" and code "rate_limit_exceeded", plus Retry-After and x-ratelimit-* headers
        # (https://platform.openai.com/docs/guides/rate-limits).
        "rate_limit": ErrorPreset(
            429,
            "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
            "Please try again in 1s.",
            "requests",
            "rate_limit_exceeded",
            headers=MappingProxyType(
                {
                    "Retry-After": "1",
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": "1s",
                }
            ),
        ),
        # "429 - You exceeded your current quota, please check your plan and billing details"
        # (error-codes guide): type and code are both "insufficient_quota"; retrying does not help.
        "insufficient_quota": ErrorPreset(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        # "500 - The server had an error while processing your request" (error-codes guide).
        "server_error": ErrorPreset(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        ),
        # "503 - The engine is currently overloaded, please try again later" (error-codes guide).
        "overloaded": ErrorPreset(
            503,
            "The engine is currently overloaded, please try again later.",
            "service_unavailable_error",
            "server_is_overloaded",
        ),
        # RFC 7725 "451 Unavailable For Legal Reasons", as regional gateways and proxies in front of
        # providers answer it; OpenAI itself uses the 403 below.
        "region_block_451": ErrorPreset(
            451,
            "This model is unavailable in your region for legal reasons.",
            "request_forbidden",
            "unavailable_for_legal_reasons",
        ),
        # "403 - Country, region, or territory not supported" (error-codes guide); the wire body seen in
        # the wild is type "request_forbidden", code "unsupported_country_region_territory"
        # (e.g. https://github.com/songquanpeng/one-api/issues/1692).
        "region_block_403": ErrorPreset(
            403,
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        ),
        # Prompt over the context window: invalid_request_error, param "messages",
        # code "context_length_exceeded".
        "context_length": ErrorPreset(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
        # Safety system rejection: invalid_request_error with code "content_policy_violation".
        "content_policy": ErrorPreset(
            400,
            "Your request was rejected as a result of our safety system.",
            "invalid_request_error",
            "content_policy_violation",
        ),
        "bad_request": ErrorPreset(
            400,
            "Invalid request: the simulator was told to reject this request.",
            "invalid_request_error",
        ),
        # "401 - Incorrect API key provided" (error-codes guide): code "invalid_api_key".
        "auth": ErrorPreset(
            401,
            "Incorrect API key provided: sk-sim***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
    }
)

# Status -> (OpenAI error type, code) for statuses without a preset; anything unlisted falls back on
# "invalid_request_error" (4xx) or "server_error" (5xx), as OpenAI does.
_STATUS_KINDS: MappingProxyType[int, tuple[str, str | None]] = MappingProxyType(
    {
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("request_forbidden", None),
        404: ("invalid_request_error", "model_not_found"),
        429: ("requests", "rate_limit_exceeded"),
        451: ("request_forbidden", "unavailable_for_legal_reasons"),
        503: ("service_unavailable_error", "server_is_overloaded"),
    }
)


def default_error_body(status: int) -> dict[str, Any]:
    """The OpenAI-shaped error body for ``status`` (400-599) when a scenario gives none."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    fallback = ("invalid_request_error", None) if status < 500 else ("server_error", None)
    type_, code = _STATUS_KINDS.get(status, fallback)
    return error_body(f"Simulated upstream error: {status} {phrase}.", type_, code)
