"""Bad client input end to end: every malformed request gets an OpenAI-shaped 4xx (never a 500),
never reaches the upstream, still leaves exactly one ledger row, and leaves the server healthy.

Raw ``httpx`` sends the bytes the SDK would never send; the real ``openai`` SDK (no retries)
checks that its exception classes and fields come out right.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway, run_gateway

MSG = [{"role": "user", "content": "hi"}]
_MSG_JSON = b'[{"role": "user", "content": "hi"}]'


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "chat", "messages": MSG, **fields})


def assert_openai_error(
    resp: httpx.Response, status: int, *, type_: str | None = None, param: Any = ..., code: Any = ...
) -> dict[str, Any]:
    """``resp`` is ``status`` with body ``{"error": {"message", "type", "param", "code"}}``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    if type_ is not None:
        assert err["type"] == type_, err
    if param is not ...:
        assert err["param"] == param, err
    if code is not ...:
        assert err["code"] == code, err
    return err


@dataclass
class Api:
    """The gateway under test and clients for it."""

    gw: RunningGateway
    http: httpx.Client
    sdk: openai.OpenAI

    def post(self, content: Any, **headers: str) -> httpx.Response:
        return self.http.post(
            self.gw.base_url + "/chat/completions",
            content=content,
            headers={"content-type": "application/json", **headers},
        )

    def rows(self) -> list[Any]:
        self.gw.flush_ledger()
        return list(self.gw.gateway.ledger._sink.list_usage(1000))


def assert_still_healthy(api: Api, sim: SimHandle) -> None:
    """/healthz answers 200 and a normal request is served by the upstream."""
    assert api.http.get(api.gw.url + "/healthz").status_code == 200
    before = sim.stats()["total"]
    out = api.sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "hello there"
    assert sim.stats()["total"] == before + 1


@pytest.fixture
def api(
    e2e_config: Callable[..., str],
    e2e_db_url: str,
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
) -> Iterator[Api]:
    with run_gateway(e2e_config(), storage_url=e2e_db_url) as gw:
        yield Api(gw, e2e_http, e2e_openai(gw.base_url))


@pytest.fixture
def small_api(
    e2e_config: Callable[..., str],
    e2e_db_url: str,
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
) -> Iterator[Api]:
    """The same gateway with a 1 MiB body limit."""
    with run_gateway(e2e_config(extra="server: {max_body_mb: 1}"), storage_url=e2e_db_url) as gw:
        yield Api(gw, e2e_http, e2e_openai(gw.base_url))


# (id, raw body, status, param, code). type is invalid_request_error for all of them.
BAD_BODIES = [
    ("invalid_json", b'{"model": "chat", "messages": [', 400, None, ...),
    ("empty_body", b"", 400, None, ...),
    ("json_array", b'[{"model": "chat", "messages": ' + _MSG_JSON + b"}]", 400, None, "invalid_type"),
    ("json_string", b'"please answer"', 400, None, "invalid_type"),
    ("json_number", b"42", 400, None, "invalid_type"),
    ("trailing_garbage", _body() + b" x", 400, None, ...),
    ("missing_messages", b'{"model": "chat"}', 400, "messages", "missing_required_parameter"),
    ("empty_messages", b'{"model": "chat", "messages": []}', 400, "messages", "empty_array"),
    (
        "messages_object",
        b'{"model": "chat", "messages": {"role": "user", "content": "hi"}}',
        400,
        "messages",
        "invalid_type",
    ),
    ("messages_string", b'{"model": "chat", "messages": "hi"}', 400, "messages", "invalid_type"),
    ("message_null", b'{"model": "chat", "messages": [null]}', 400, "messages[0]", "invalid_type"),
    ("temperature_string", _body(temperature="hot"), 400, "temperature", "invalid_type"),
    ("temperature_out_of_range", _body(temperature=7), 400, "temperature", ...),
    ("max_tokens_string", _body(max_tokens="10"), 400, "max_tokens", "invalid_type"),
    ("max_tokens_zero", _body(max_tokens=0), 400, "max_tokens", ...),
    ("stream_string", _body(stream="yes"), 400, "stream", "invalid_type"),
    ("n_boolean", _body(n=True), 400, "n", "invalid_type"),
    ("model_integer", b'{"model": 123, "messages": ' + _MSG_JSON + b"}", 400, "model", "invalid_type"),
    ("model_missing", b'{"messages": ' + _MSG_JSON + b"}", 400, "model", ...),
    (
        "non_utf8_string",
        b'{"model": "chat", "messages": [{"role": "user", "content": "caf\xe9 \xff"}]}',
        400,
        None,
        ...,
    ),
    ("non_utf8_garbage", b"\xff\xfe\x00{\x00", 400, None, ...),
    ("utf8_bom", b"\xef\xbb\xbf" + _body(), 400, None, ...),
    (
        "lone_surrogate",
        b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
        400,
        None,
        ...,
    ),
    ("nan_literal", b'{"model": "chat", "messages": ' + _MSG_JSON + b', "temperature": NaN}', 400, None, ...),
    ("deep_nesting", b"[" * 5000 + b"]" * 5000, 400, None, ...),
    ("unknown_model", _body(model="no-such-model"), 404, "model", "model_not_found"),
]


@pytest.mark.parametrize(
    ("raw", "status", "param", "code"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_body_is_rejected_cleanly(
    api: Api, e2e_sim: SimHandle, raw: bytes, status: int, param: Any, code: Any
) -> None:
    resp = api.post(raw)
    assert_openai_error(resp, status, type_="invalid_request_error", param=param, code=code)
    assert e2e_sim.stats()["total"] == 0, "a rejected request must not reach the upstream"
    assert resp.headers["x-relaygate-attempts"] == "0"
    assert_still_healthy(api, e2e_sim)
    rows = api.rows()
    assert len(rows) == 2  # the rejected request, then the healthy one
    rejected = next(r for r in rows if r.request_id == resp.headers["x-request-id"])
    assert rejected.status == status
    assert rejected.attempts == []
    assert rejected.served_deployment is None


def test_every_rejected_request_leaves_exactly_one_ledger_row(api: Api, e2e_sim: SimHandle) -> None:
    ids = []
    for _, raw, status, _, _ in BAD_BODIES:
        resp = api.post(raw)
        assert resp.status_code == status
        ids.append(resp.headers["x-request-id"])
    assert len(set(ids)) == len(BAD_BODIES)
    rows = api.rows()
    assert len(rows) == len(BAD_BODIES)
    assert api.gw.gateway.ledger._sink.count_usage() == len(BAD_BODIES)
    assert {r.request_id: r.status for r in rows} == dict(zip(ids, [c[2] for c in BAD_BODIES], strict=True))
    assert e2e_sim.stats()["total"] == 0


# --- the real SDK ---------------------------------------------------------------------------


def test_sdk_unknown_model_raises_not_found(api: Api, e2e_sim: SimHandle) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        api.sdk.chat.completions.create(model="gpt-9-ultra", messages=[{"role": "user", "content": "x"}])
    err = info.value
    assert err.status_code == 404
    assert err.code == "model_not_found"
    assert err.param == "model"
    assert err.type == "invalid_request_error"
    assert "gpt-9-ultra" in err.message
    assert e2e_sim.stats()["total"] == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": MSG, "temperature": "hot"}, "temperature"),
        ({"messages": MSG, "max_tokens": "10"}, "max_tokens"),
        ({"messages": MSG, "stream": "yes"}, "stream"),
        ({"messages": MSG, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
    ids=["empty_messages", "temperature_string", "max_tokens_string", "stream_string", "options_no_stream"],
)
def test_sdk_bad_parameters_raise_bad_request(
    api: Api, e2e_sim: SimHandle, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        api.sdk.chat.completions.create(model="chat", **kwargs)
    assert info.value.status_code == 400
    assert info.value.param == param
    assert info.value.type == "invalid_request_error"
    assert e2e_sim.stats()["total"] == 0
    assert_still_healthy(api, e2e_sim)


# --- body size ------------------------------------------------------------------------------


def _text_body(n_bytes: int) -> bytes:
    head = b'{"model": "chat", "messages": [{"role": "user", "content": "'
    tail = b'"}]}'
    return head + b"a" * (n_bytes - len(head) - len(tail)) + tail


def _chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_body_over_default_limit_gets_413(api: Api, e2e_sim: SimHandle) -> None:
    big = _text_body(64 * 1024 * 1024)
    resp = api.post(big)
    assert resp.request.headers["content-length"] == str(len(big))
    assert_openai_error(resp, 413, type_="invalid_request_error", param=None, code="request_too_large")
    chunked = api.post(_chunks(big))
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in chunked.request.headers
    assert_openai_error(chunked, 413, type_="invalid_request_error", code="request_too_large")
    assert e2e_sim.stats()["total"] == 0
    assert_still_healthy(api, e2e_sim)
    assert sorted(r.status for r in api.rows()) == [200, 413, 413]


def test_small_limit_413_with_content_length_and_chunked(small_api: Api, e2e_sim: SimHandle) -> None:
    over = _text_body(2 * 1024 * 1024)
    assert_openai_error(small_api.post(over), 413, code="request_too_large")
    resp = small_api.post(_chunks(over, 64 * 1024))
    assert "content-length" not in resp.request.headers
    assert_openai_error(resp, 413, code="request_too_large")
    assert e2e_sim.stats()["total"] == 0
    # just under the limit passes, both ways
    under = _text_body(1024 * 1024 - 100)
    assert small_api.post(under).status_code == 200
    assert small_api.post(_chunks(under, 64 * 1024)).status_code == 200
    assert e2e_sim.stats()["total"] == 2
    assert_still_healthy(small_api, e2e_sim)
    assert sorted(r.status for r in small_api.rows()) == [200, 200, 200, 413, 413]


def test_ten_megabyte_request_with_images_is_accepted(api: Api, e2e_sim: SimHandle) -> None:
    images = [base64.b64encode(os.urandom(2_500_000)).decode() for _ in range(3)]
    parts: list[dict[str, Any]] = [{"type": "text", "text": "what differs between these pictures?"}]
    parts += [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}", "detail": "high"}}
        for b64 in images
    ]
    messages: Any = [{"role": "user", "content": parts}]
    raw = api.sdk.chat.completions.with_raw_response.create(model="chat", messages=messages)
    assert int(raw.http_request.headers["content-length"]) > 10_000_000
    assert raw.parse().choices[0].message.content == "hello there"
    sent = e2e_sim.requests("m1")[-1]["body"]
    got = [p["image_url"]["url"] for p in sent["messages"][0]["content"] if p["type"] == "image_url"]
    assert got == [f"data:image/png;base64,{b64}" for b64 in images]


# --- pass-through ---------------------------------------------------------------------------


def test_unknown_top_level_fields_pass_through(api: Api, e2e_sim: SimHandle) -> None:
    extra = {"x_vendor_option": {"depth": 3, "tags": ["a", "b"]}, "reasoning_effort": "low", "my_flag": True}
    out = api.sdk.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], extra_body=extra
    )
    assert out.choices[0].message.content == "hello there"
    sent = e2e_sim.requests()[-1]
    assert sent["model"] == "m1"  # the route name is rewritten to the deployment's model
    for key, value in extra.items():
        assert sent["body"][key] == value


def test_stream_with_client_stream_options_passes_the_rewritten_model(api: Api, e2e_sim: SimHandle) -> None:
    """With include_usage true the upstream sees the deployment model, not the route name."""
    stream = api.sdk.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "hello there"
    assert e2e_sim.requests()[-1]["model"] == "m1"


@pytest.mark.parametrize("options", [{"include_usage": False}, {}], ids=["include_usage_false", "empty"])
def test_stream_options_without_include_usage_keeps_the_model_rewrite(
    api: Api, e2e_sim: SimHandle, options: dict[str, Any]
) -> None:
    """Regression: stream_options without include_usage=true used to be re-encoded from the parsed
    body, undoing the model rewrite (the upstream got 'chat' instead of 'm1')."""
    resp = api.post(
        orjson.dumps({"model": "chat", "messages": MSG, "stream": True, "stream_options": options})
    )
    assert resp.status_code == 200
    assert e2e_sim.requests()[-1]["model"] == "m1"


# --- wrong method / unknown path --------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_openai_shaped(api: Api, e2e_sim: SimHandle, method: str) -> None:
    resp = api.http.request(method, api.gw.base_url + "/chat/completions")
    assert_openai_error(resp, 405, type_="invalid_request_error", code="method_not_allowed")
    assert e2e_sim.stats()["total"] == 0
    assert_still_healthy(api, e2e_sim)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nope"), ("POST", "/v1/completions"), ("POST", "/v2/chat/completions"), ("GET", "/")],
)
def test_unknown_path_is_404_openai_shaped(api: Api, e2e_sim: SimHandle, method: str, path: str) -> None:
    resp = api.http.request(method, api.gw.url + path, json={"model": "chat", "messages": MSG})
    err = assert_openai_error(resp, 404, type_="invalid_request_error", code="unknown_url")
    assert path in err["message"]
    assert e2e_sim.stats()["total"] == 0
    assert_still_healthy(api, e2e_sim)


def test_405_names_the_allowed_method(api: Api) -> None:
    """RFC 9110 15.5.6: a 405 response MUST carry Allow."""
    resp = api.http.get(api.gw.base_url + "/chat/completions")
    assert resp.status_code == 405
    assert resp.headers.get("allow") == "POST"
