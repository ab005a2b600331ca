"""Upstream answers caused by the request itself: llama.cpp's recorded error bodies
(tests/fixtures/llamacpp/) classified, reshaped for the local provider, the refused field named,
and the status of "all candidates failed" when every cause was the client's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from relaygate.errors import AllCandidatesFailedError, ErrorClass, UpstreamError
from relaygate.protocols.openai import parse_chat_request
from relaygate.providers.errors import classify_http_error, refused_input
from relaygate.providers.local import openai_error_shape
from relaygate.routing.attempts import content_part_path, name_refused_field

FIX = Path(__file__).parent.parent / "fixtures" / "llamacpp"


def fixture(name: str) -> tuple[int, bytes]:
    body = (FIX / name).read_bytes()
    return int(orjson.loads(body)["error"]["code"]), body


# (fixture, status it came with, class, what it refuses)
LLAMACPP = [
    ("error_image_unsupported.json", 500, ErrorClass.UNSUPPORTED, "image"),
    ("error_audio_unsupported.json", 500, ErrorClass.UNSUPPORTED, "audio"),
    ("error_unsupported_content_type.json", 400, ErrorClass.UNSUPPORTED, "content"),
    ("error_context_size.json", 400, ErrorClass.CONTEXT_LENGTH, None),
    ("error_n_out_of_range.json", 400, ErrorClass.CLIENT_ERROR, None),
]


@pytest.mark.parametrize(("name", "status", "cls", "refused"), LLAMACPP)
def test_llamacpp_bodies_classify(name: str, status: int, cls: ErrorClass, refused: str | None) -> None:
    got_status, body = fixture(name)
    assert got_status == status
    err = classify_http_error(status, {}, body)
    assert err.error_class is cls, err.message
    assert not err.retryable
    assert refused_input(err) == refused


@pytest.mark.parametrize(
    ("status", "message", "refused"),
    [
        (500, "tools param requires --jinja flag", "tools"),
        (500, "tool_choice param requires --jinja flag", "tool_choice"),
        (501, "This server does not support embeddings.", None),  # type not_supported_error
        (400, "Invalid content type. image_url is only supported by certain models.", "image"),
    ],
)
def test_other_unsupported_answers(status: int, message: str, refused: str | None) -> None:
    kind = "not_supported_error" if status == 501 else "invalid_request_error"
    err = classify_http_error(status, {}, orjson.dumps({"error": {"message": message, "type": kind}}))
    assert err.error_class is ErrorClass.UNSUPPORTED
    assert refused_input(err) == refused


def test_a_plain_500_is_still_a_server_error() -> None:
    body = orjson.dumps({"error": {"code": 500, "message": "Internal error", "type": "server_error"}})
    assert classify_http_error(500, {}, body).error_class is ErrorClass.SERVER_ERROR


# --- the local provider's error bodies in OpenAI's shape ---------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "error_n_out_of_range.json",
            {"type": "invalid_request_error", "param": "n", "code": None},
        ),
        (
            "error_context_size.json",
            {"type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"},
        ),
        (
            "error_unsupported_content_type.json",
            {"type": "invalid_request_error", "param": None, "code": None},
        ),
        ("error_image_unsupported.json", {"type": "server_error", "param": None, "code": None}),
    ],
)
def test_openai_error_shape(name: str, expected: dict[str, Any]) -> None:
    _, body = fixture(name)
    out = orjson.loads(openai_error_shape(body))
    assert set(out) == {"error"}
    assert set(out["error"]) == {"message", "type", "param", "code"}
    assert out["error"]["message"] == orjson.loads(body)["error"]["message"]
    assert {k: out["error"][k] for k in expected} == expected


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"error": "x"}'])
def test_openai_error_shape_leaves_other_bodies(body: bytes) -> None:
    assert openai_error_shape(body) == body


# --- naming the refused field -------------------------------------------------------------------

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    ("fixture_name", "messages", "param"),
    [
        (
            "error_image_unsupported.json",
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "x"}, IMAGE]},
            ],
            "messages[1].content[1].type",
        ),
        (
            "error_audio_unsupported.json",
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            "messages[0].content[0].type",
        ),
        (
            "error_unsupported_content_type.json",
            [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "file", "file": {}}]}],
            "messages[0].content[1].type",
        ),
        ("error_image_unsupported.json", [{"role": "user", "content": "no parts"}], None),
    ],
)
def test_name_refused_field(fixture_name: str, messages: Any, param: str | None) -> None:
    status, body = fixture(fixture_name)
    err = classify_http_error(status, {}, body)
    req = parse_chat_request(orjson.dumps({"model": "m", "messages": messages}))
    name_refused_field(err, req)
    assert err.param == param


def test_content_part_path_tolerates_odd_shapes() -> None:
    odd = {"messages": [None, {"content": None}, {"content": [None, {"type": 3}, {"type": "image"}]}]}
    assert content_part_path(odd, lambda t: t == "image") == "messages[2].content[2].type"
    assert content_part_path({"messages": "x"}, lambda t: True) is None
    assert content_part_path([], lambda t: True) is None


# --- AllCandidatesFailedError: status from its causes --------------------------------------------


def cause(cls: ErrorClass, param: str | None = None) -> tuple[str, UpstreamError]:
    err = UpstreamError(f"failed: {cls.value}", error_class=cls)
    err.param = param
    return f"p/{cls.value}", err


U, C, X = ErrorClass.UNSUPPORTED, ErrorClass.CONTEXT_LENGTH, ErrorClass.CLIENT_ERROR


@pytest.mark.parametrize(
    ("classes", "status", "type_", "code", "param"),
    [
        ([C], 400, "invalid_request_error", "context_length_exceeded", "messages"),
        ([C, C], 400, "invalid_request_error", "context_length_exceeded", "messages"),
        ([U, C], 400, "invalid_request_error", "context_length_exceeded", "messages"),
        ([C, X], 400, "invalid_request_error", "context_length_exceeded", "messages"),
        ([U], 400, "invalid_request_error", "unsupported_value", "messages[0].content[1].type"),
        ([U, U], 400, "invalid_request_error", "unsupported_value", "messages[0].content[1].type"),
        ([U, ErrorClass.SERVER_ERROR], 503, "api_error", "all_deployments_unavailable", None),
        ([C, ErrorClass.CIRCUIT_OPEN], 503, "api_error", "all_deployments_unavailable", None),
        ([C, ErrorClass.AUTH], 502, "api_error", "all_deployments_failed", None),
        ([ErrorClass.SERVER_ERROR, ErrorClass.AUTH], 502, "api_error", "all_deployments_failed", None),
        (
            [ErrorClass.SERVER_ERROR, ErrorClass.TIMEOUT],
            503,
            "api_error",
            "all_deployments_unavailable",
            None,
        ),
        ([ErrorClass.CONTENT_POLICY], 502, "api_error", "all_deployments_failed", None),
        ([], 502, "api_error", "all_deployments_failed", None),
    ],
)
def test_all_candidates_failed_status(
    classes: list[ErrorClass], status: int, type_: str, code: str, param: str | None
) -> None:
    causes = [cause(c, "messages[0].content[1].type" if c is U else None) for c in classes]
    err = AllCandidatesFailedError("r", causes)
    assert (err.status, err.type, err.code, err.param) == (status, type_, code, param)
    for dep, _ in causes:
        assert dep in err.message  # every cause kept
    if param and code == "unsupported_value":
        assert f"'{param}'" in err.message
