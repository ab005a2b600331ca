"""The typed error hierarchy: every failure the gateway reports is one of these.

Each class carries the HTTP ``status`` the client sees, the OpenAI error ``type`` and
``code`` strings, and whether the failover loop may ``retry`` the same deployment.
Rendering to wire JSON happens in exactly one place (``relaygate.api.error_render``).

Tree::

    GatewayError
    +-- InvalidRequestError (400)            malformed body, wrong types, bad parameter
    |   +-- RequestTooLargeError (413)
    +-- AuthenticationError (401)            missing / unknown virtual key
    +-- PermissionDeniedError (403)          key may not use this route
    +-- NotFoundError (404)                  unknown model (route) or path
    +-- RateLimitError (429)                 gateway itself refuses, with Retry-After
    |   +-- BudgetExceededError (429)        a tenant's USD budget for the day/month is spent
    +-- ConfigError                          bad relaygate.yaml (never sent to a client)
    +-- UpstreamError (502)                  one upstream attempt failed; ``error_class`` says how
    |   +-- UpstreamTimeoutError (504)
    |   +-- UpstreamConnectionError (502)
    +-- AllCandidatesFailedError (502/503/400) every allowed deployment failed; keeps every cause

Shapes follow OpenAI's error object ``{"error": {"message", "type", "param", "code"}}``
(https://platform.openai.com/docs/guides/error-codes).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AllCandidatesFailedError",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigError",
    "ErrorClass",
    "GatewayError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamTimeoutError",
]


class ErrorClass(StrEnum):
    """How one upstream failure steers the failover loop (see ``routing/retry.py``).

    - ``rate_limited``: 429 rate limit; retry the same deployment after backoff / Retry-After.
    - ``server_error``: 5xx / 529 overloaded; retry the same deployment with backoff.
    - ``timeout``, ``connection``: move on at once.
    - ``region_blocked``: 451, or 403 saying the country/region/territory is unsupported; move on.
    - ``quota_exhausted``: 429 ``insufficient_quota`` or billing; move on.
    - ``context_length``: prompt too long; move on to a deployment with a larger context window.
    - ``content_policy``: upstream content filter; move on.
    - ``auth``: the gateway's provider credential was refused (401/403); move on.
    - ``client_error``: any other 4xx; never fail over, the client sees it unchanged.
    - ``stream_cut``: a stream ended without a finish_reason or ``[DONE]``.
    - ``malformed``: upstream answered 2xx with a body we could not parse; move on.
    - ``unsupported``: the request cannot be translated for this deployment; move on (a 400
      naming the field when no deployment can take it).
    """

    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    REGION_BLOCKED = "region_blocked"
    QUOTA_EXHAUSTED = "quota_exhausted"
    CONTEXT_LENGTH = "context_length"
    CONTENT_POLICY = "content_policy"
    AUTH = "auth"
    CLIENT_ERROR = "client_error"
    STREAM_CUT = "stream_cut"
    MALFORMED = "malformed"
    CIRCUIT_OPEN = "circuit_open"
    UNSUPPORTED = "unsupported"  # this deployment's protocol cannot carry the request; move on
    COOLDOWN = "cooldown"


class GatewayError(Exception):
    """Base class. ``status`` is the HTTP status, ``type``/``code`` the OpenAI error fields."""

    status: int = 500
    type: str = "api_error"
    code: str | None = None
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"


class RequestTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_denied"
    code = "model_not_allowed"


class NotFoundError(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RateLimitError(GatewayError):
    """The gateway answers 429 itself; ``retry_after_s`` becomes the Retry-After header."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = max(0.0, retry_after_s)
        self.headers["retry-after"] = str(max(1, int(-(-self.retry_after_s // 1))))


class BudgetExceededError(RateLimitError):
    """A tenant's USD budget for the day or month is spent (429, ``budget_exceeded``).

    Shaped like OpenAI's own quota error (type ``insufficient_quota``,
    https://platform.openai.com/docs/guides/error-codes) so clients do not treat it as a
    short rate limit; ``x-should-retry: false`` tells the openai and anthropic SDKs not to retry.
    ``retry_after_s`` is the time until the period (UTC day or month) ends.
    """

    type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, *, retry_after_s: float, **kw: object) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **kw)
        self.headers["x-should-retry"] = "false"


class ConfigError(GatewayError):
    """A config file is invalid. ``str()`` is one line: ``file[:line]: field.path: reason``."""

    def __init__(self, file: str, field: str, reason: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {reason}")
        self.file, self.field, self.reason, self.line = file, field, reason, line


class UpstreamError(GatewayError):
    """One upstream attempt failed.

    ``error_class`` steers failover; ``upstream_status``/``upstream_body`` keep what the
    provider said (a client_error is relayed to the client byte for byte);
    ``retry_after_s`` comes from the upstream Retry-After header when present.
    """

    status = 502
    type = "upstream_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass,
        upstream_status: int | None = None,
        upstream_body: bytes | None = None,
        retry_after_s: float | None = None,
        upstream_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=error_class.value)
        self.error_class = error_class
        self.upstream_status = upstream_status
        self.upstream_body = upstream_body
        self.retry_after_s = retry_after_s
        self.upstream_headers = dict(upstream_headers or {})
        self.retryable = error_class in (ErrorClass.RATE_LIMITED, ErrorClass.SERVER_ERROR)


class UpstreamTimeoutError(UpstreamError):
    status = 504

    def __init__(self, message: str) -> None:
        super().__init__(message, error_class=ErrorClass.TIMEOUT)


class UpstreamConnectionError(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, error_class=ErrorClass.CONNECTION)


class AllCandidatesFailedError(GatewayError):
    """Every allowed deployment failed. ``causes`` is ``[(deployment_id, UpstreamError), ...]``.

    Status is 503 when every cause is transient (rate limit, overload, breaker open,
    cooldown) or the request's own fault on that deployment, with at least one transient (retry
    later may succeed); 400 ``invalid_request_error`` when every cause is the client's own request
    (``CLIENT_SIDE``: no deployment could take this input, or it is too long for every context
    window), else 502. A 400 with a context-length cause carries OpenAI's ``param: "messages"``,
    ``code: "context_length_exceeded"`` (https://platform.openai.com/docs/guides/error-codes),
    otherwise ``unsupported_value`` and the refused field as ``param``. The message keeps every
    cause. When the only thing stopping the request is a wait (rate limits / cooldowns), the
    router answers a 429 with Retry-After instead.
    """

    status = 502
    type = "api_error"
    code = "all_deployments_failed"

    # Causes that say nothing about any upstream's health: the request itself is the reason.
    CLIENT_SIDE = frozenset({ErrorClass.CLIENT_ERROR, ErrorClass.UNSUPPORTED, ErrorClass.CONTEXT_LENGTH})
    TRANSIENT = frozenset(
        {
            ErrorClass.SERVER_ERROR,
            ErrorClass.RATE_LIMITED,
            ErrorClass.CIRCUIT_OPEN,
            ErrorClass.COOLDOWN,
            ErrorClass.TIMEOUT,
            ErrorClass.CONNECTION,
        }
    )

    def __init__(self, route: str, causes: list[tuple[str, UpstreamError]]) -> None:
        parts = "; ".join(f"{dep}: {err.error_class.value} ({err.message})" for dep, err in causes)
        super().__init__(f"All deployments for model '{route}' failed: {parts or 'no candidates'}")
        self.route = route
        self.causes = causes
        classes = {err.error_class for _, err in causes}
        # A deployment that cannot take this request does not stop one that is only down for now.
        if causes and classes & self.TRANSIENT and classes <= self.TRANSIENT | self.CLIENT_SIDE:
            self.status = 503
            self.code = "all_deployments_unavailable"
        elif causes and classes <= self.CLIENT_SIDE:
            self.status, self.type = 400, "invalid_request_error"
            if ErrorClass.CONTEXT_LENGTH in classes:
                self.code, self.param = "context_length_exceeded", "messages"
                lead = f"The request does not fit any deployment for model '{route}'"
            else:
                self.code = "unsupported_value"
                self.param = next((err.param for _, err in causes if err.param), None)
                what = f"'{self.param}'" if self.param else "this input"
                lead = f"No deployment for model '{route}' supports {what}"
            self.message = f"{lead}. {self.message}"
