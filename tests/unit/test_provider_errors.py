"""classify_http_error / parse_retry_after: real provider error bodies -> ErrorClass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest

from relaygate.errors import ErrorClass, UpstreamError
from relaygate.providers.errors import classify_http_error, parse_retry_after


def j(obj: Any) -> bytes:
    return orjson.dumps(obj)


# Bodies as the providers send them.
OPENAI_REGION = j(
    {
        "error": {
            "code": "unsupported_country_region_territory",
            "message": "Country, region, or territory not supported",
            "param": None,
            "type": "request_forbidden",
        }
    }
)
GEMINI_REGION = j(
    {
        "error": {
            "code": 400,
            "message": "User location is not supported for the API use.",
            "status": "FAILED_PRECONDITION",
        }
    }
)
GEMINI_REGION_ARRAY = b"[" + GEMINI_REGION + b"]"
OPENAI_RATE = j(
    {
        "error": {
            "message": "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): "
            "Limit 200000, Used 199000, Requested 1500. Please try again in 150ms. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
)
OPENAI_QUOTA = j(
    {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
)
OPENAI_CONTEXT = j(
    {
        "error": {
            "message": "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130532 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
)
OPENAI_CONTENT = j(
    {
        "error": {
            "code": "content_policy_violation",
            "message": "Your request was rejected as a result of our safety system.",
            "param": None,
            "type": "invalid_request_error",
        }
    }
)
OPENAI_BAD_PARAM = j(
    {
        "error": {
            "message": "Invalid value for 'tool_choice': 'maybe'.",
            "type": "invalid_request_error",
            "param": "tool_choice",
            "code": "invalid_value",
        }
    }
)
OPENAI_NO_MODEL = j(
    {
        "error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
)
OPENAI_BAD_KEY = j(
    {
        "error": {
            "message": "Incorrect API key provided: sk-abc. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
)
ANTHROPIC_OVERLOADED = j({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
ANTHROPIC_PERMISSION = j(
    {
        "type": "error",
        "error": {
            "type": "permission_error",
            "message": "Your API key does not have permission to use the specified resource.",
        },
    }
)
ANTHROPIC_TOO_LONG = j(
    {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 210000 tokens > 200000 maximum",
        },
    }
)
DEEPSEEK_BALANCE = j(
    {
        "error": {
            "message": "Insufficient Balance",
            "type": "unknown_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }
)

# (status, body, expected class)
CLASSIFY = [
    pytest.param(451, b"", ErrorClass.REGION_BLOCKED, id="451-empty"),
    pytest.param(451, b"Unavailable For Legal Reasons", ErrorClass.REGION_BLOCKED, id="451-text"),
    pytest.param(403, OPENAI_REGION, ErrorClass.REGION_BLOCKED, id="openai-403-region"),
    pytest.param(400, GEMINI_REGION, ErrorClass.REGION_BLOCKED, id="gemini-400-location"),
    pytest.param(400, GEMINI_REGION_ARRAY, ErrorClass.REGION_BLOCKED, id="gemini-400-location-array"),
    pytest.param(429, OPENAI_RATE, ErrorClass.RATE_LIMITED, id="openai-429-rate"),
    pytest.param(429, b"", ErrorClass.RATE_LIMITED, id="429-empty"),
    pytest.param(429, b"Too Many Requests", ErrorClass.RATE_LIMITED, id="429-text"),
    pytest.param(429, OPENAI_QUOTA, ErrorClass.QUOTA_EXHAUSTED, id="openai-429-quota"),
    pytest.param(402, DEEPSEEK_BALANCE, ErrorClass.QUOTA_EXHAUSTED, id="deepseek-402-balance"),
    pytest.param(500, b"", ErrorClass.SERVER_ERROR, id="500"),
    pytest.param(502, b"<html>Bad Gateway</html>", ErrorClass.SERVER_ERROR, id="502-html"),
    pytest.param(
        503, j({"error": {"message": "The server is overloaded"}}), ErrorClass.SERVER_ERROR, id="503"
    ),
    pytest.param(504, b"", ErrorClass.SERVER_ERROR, id="504"),
    pytest.param(529, ANTHROPIC_OVERLOADED, ErrorClass.SERVER_ERROR, id="anthropic-529"),
    pytest.param(401, OPENAI_BAD_KEY, ErrorClass.AUTH, id="401"),
    pytest.param(401, b"", ErrorClass.AUTH, id="401-empty"),
    pytest.param(403, b"Forbidden", ErrorClass.AUTH, id="403-plain"),
    pytest.param(403, ANTHROPIC_PERMISSION, ErrorClass.AUTH, id="anthropic-403-permission"),
    pytest.param(400, OPENAI_CONTEXT, ErrorClass.CONTEXT_LENGTH, id="openai-400-context"),
    pytest.param(400, ANTHROPIC_TOO_LONG, ErrorClass.CONTEXT_LENGTH, id="anthropic-400-too-long"),
    pytest.param(413, b"prompt is too long", ErrorClass.CONTEXT_LENGTH, id="413-too-long"),
    pytest.param(400, OPENAI_CONTENT, ErrorClass.CONTENT_POLICY, id="openai-400-content-policy"),
    pytest.param(400, OPENAI_BAD_PARAM, ErrorClass.CLIENT_ERROR, id="400-bad-param"),
    pytest.param(400, b"", ErrorClass.CLIENT_ERROR, id="400-empty"),
    pytest.param(400, b"not json at all {", ErrorClass.CLIENT_ERROR, id="400-not-json"),
    pytest.param(400, b"[]", ErrorClass.CLIENT_ERROR, id="400-empty-array"),
    pytest.param(400, b'"oops"', ErrorClass.CLIENT_ERROR, id="400-json-string"),
    pytest.param(400, b'{"error": null}', ErrorClass.CLIENT_ERROR, id="400-null-error"),
    pytest.param(400, b'{"error": "bad thing"}', ErrorClass.CLIENT_ERROR, id="400-string-error"),
    pytest.param(404, OPENAI_NO_MODEL, ErrorClass.CLIENT_ERROR, id="404-model"),
    pytest.param(404, b"Not Found", ErrorClass.CLIENT_ERROR, id="404-plain"),
    pytest.param(422, j({"detail": [{"msg": "field required"}]}), ErrorClass.CLIENT_ERROR, id="422"),
    pytest.param(408, b"", ErrorClass.TIMEOUT, id="408"),
]


@pytest.mark.parametrize(("status", "body", "cls"), CLASSIFY)
def test_classify(status: int, body: bytes, cls: ErrorClass) -> None:
    e = classify_http_error(status, {}, body)
    assert isinstance(e, UpstreamError)
    assert e.error_class is cls, e.message
    assert e.retryable is (cls in (ErrorClass.RATE_LIMITED, ErrorClass.SERVER_ERROR))
    assert e.upstream_status == status
    assert e.upstream_body is body
    assert e.code == cls.value
    assert e.message.startswith(f"upstream {status}: ")
    assert e.retry_after_s is None


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_server_errors_are_retryable(status: int) -> None:
    assert classify_http_error(status, {}, b"").retryable is True


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retryable(status: int) -> None:
    e = classify_http_error(status, {}, b"{}")
    assert e.error_class is ErrorClass.CLIENT_ERROR and e.retryable is False


def test_headers_are_kept() -> None:
    h = {"retry-after": "2", "x-request-id": "req_1"}
    e = classify_http_error(429, h, OPENAI_RATE)
    assert e.upstream_headers == h and e.upstream_headers is not h


# Regression: OpenAI's free-tier 429 rate-limit message links to account/billing; the bare word
# "billing" must not turn a rate limit into quota_exhausted (no retry, counts against the breaker).
def test_openai_rate_limit_mentioning_billing_url_is_rate_limited() -> None:
    body = j(
        {
            "error": {
                "message": "Rate limit reached for default-gpt-3.5-turbo in organization org-abc on requests "
                "per min. Limit: 3 / min. Please try again in 20s. Contact us through our help center at "
                "help.openai.com if you continue to have issues. Please add a payment method to your "
                "account to increase your rate limit. Visit https://platform.openai.com/account/billing "
                "to add a payment method.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    )
    assert classify_http_error(429, {}, body).error_class is ErrorClass.RATE_LIMITED


# Regression: Anthropic reports an empty credit balance as HTTP 400 invalid_request_error
# ("Your credit balance is too low ..."); it must fail over as quota, not be relayed.
def test_anthropic_credit_balance_400_is_quota() -> None:
    body = j(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
                "Billing to upgrade or purchase credits.",
            },
        }
    )
    assert classify_http_error(400, {}, body).error_class is ErrorClass.QUOTA_EXHAUSTED


# --------------------------------------------------------------------------- Retry-After

NOW = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        ("soon", None),
        ("Wed, 15 Jan 2025 12:00:30 GMT", 30.0),
        ("Wednesday, 15-Jan-25 12:01:00 GMT", 60.0),  # RFC 850 form
        ("Wed Jan 15 12:00:05 2025", 5.0),  # asctime form, no zone: UTC
        ("Wed, 15 Jan 2025 11:59:00 GMT", 0.0),  # in the past
        ("Wed, 15 Jan 2025 13:00:10 +0100", 10.0),  # offset honoured
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    got = parse_retry_after(value, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize("value", ["-5", "-0.5"])
def test_parse_retry_after_never_negative(value: str) -> None:
    assert parse_retry_after(value, now=NOW) in (None, 0.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "20"}, 0.02),
        ({"retry-after": "2", "retry-after-ms": "900"}, 2.0),  # the standard header wins
        ({"retry-after": "garbage", "retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "garbage"}, None),
    ],
)
def test_classify_reads_retry_after(headers: dict[str, str], expected: float | None) -> None:
    e = classify_http_error(429, headers, OPENAI_RATE)
    assert e.error_class is ErrorClass.RATE_LIMITED
    if expected is None:
        assert e.retry_after_s is None
    else:
        assert e.retry_after_s == pytest.approx(expected)


def test_classify_reads_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    e = classify_http_error(503, {"retry-after": format_datetime(when, usegmt=True)}, b"")
    assert e.error_class is ErrorClass.SERVER_ERROR
    assert e.retry_after_s is not None and 110 <= e.retry_after_s <= 121


def test_retry_after_is_kept_for_non_retryable_classes() -> None:
    e = classify_http_error(403, {"retry-after": "60"}, OPENAI_REGION)
    assert e.error_class is ErrorClass.REGION_BLOCKED and e.retry_after_s == 60.0
