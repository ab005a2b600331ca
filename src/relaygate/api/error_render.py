"""The one place errors become wire bytes: OpenAI JSON bodies and SSE error events.

OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``
(https://platform.openai.com/docs/guides/error-codes). The official SDKs map the HTTP status
to their exception classes (400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 413/422 as APIStatusError, 429 RateLimitError,
>=500 InternalServerError); mid-stream, ``data: {"error": ...}`` makes the SDK raise APIError.
"""

from __future__ import annotations

import orjson

from relaygate.errors import GatewayError

__all__ = [
    "anthropic_error_body",
    "anthropic_error_event",
    "anthropic_error_type",
    "openai_error_body",
    "openai_error_event",
]


def openai_error_body(err: GatewayError) -> bytes:
    return orjson.dumps(
        {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    )


def openai_error_event(err: GatewayError) -> bytes:
    """An SSE event carrying the error, then the ``[DONE]`` terminator."""
    return b"data: " + openai_error_body(err) + b"\n\ndata: [DONE]\n\n"


# Anthropic error object: {"type": "error", "error": {"type", "message"}}, types by HTTP status
# (https://docs.anthropic.com/en/api/errors). The anthropic SDK maps the status to its classes.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def anthropic_error_body(err: GatewayError) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": anthropic_error_type(err.status), "message": err.message}}
    )


def anthropic_error_event(err: GatewayError) -> bytes:
    """The ``event: error`` SSE event Anthropic streams send when a stream fails mid-way."""
    return b"event: error\ndata: " + anthropic_error_body(err) + b"\n\n"
