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

__all__ = ["openai_error_body", "openai_error_event"]


def openai_error_body(err: GatewayError) -> bytes:
    return orjson.dumps(
        {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    )


def openai_error_event(err: GatewayError) -> bytes:
    """An SSE event carrying the error, then the ``[DONE]`` terminator."""
    return b"data: " + openai_error_body(err) + b"\n\ndata: [DONE]\n\n"
