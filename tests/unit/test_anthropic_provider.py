"""The Anthropic Messages adapter and the simulator's /v1/messages, over real loopback HTTP.

The adapter is driven the way routing drives it (``attempt_completion`` / ``attempt_stream``)
against ``SimServer`` speaking the Anthropic protocol; the simulator itself is checked with
the official ``anthropic`` SDK; error classification is a table over documented bodies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from relaygate.config.schema import AnthropicProvider, Config, DeploymentConfig
from relaygate.errors import ErrorClass, InvalidRequestError, UpstreamError
from relaygate.protocols.openai import ChatRequest, parse_chat_request
from relaygate.protocols.sse import SSEDecoder
from relaygate.providers.anthropic import (
    AnthropicMessagesProvider,
    AnthropicStreamDecoder,
    classify_anthropic_error,
)
from relaygate.providers.translated import TranslatedResponse
from relaygate.routing.attempts import attempt_completion, attempt_stream
from relaygate.runtime import build_providers
from relaygate.sim import SimServer

FIX = Path(__file__).parent.parent / "fixtures" / "anthropic"
REPLY = "你好 世界 👋🏽 שלום"
SCENARIO: dict[str, Any] = {
    "models": {
        "claude-x": {"reply": REPLY},
        "tool": {"tool_call": {"name": "get_weather", "arguments": {"city": "東京"}}},
        "over": {"error": {"preset": "overloaded"}},
        "limited": {"error": {"preset": "rate_limit"}},
        "geo": {"error": {"preset": "region_block_403"}},
        "bad": {"error": {"preset": "bad_request"}},
        "cut": {"reply": "one two three four", "cut_after_chunks": 0},
        "cut2": {"reply": "one two three four", "cut_after_chunks": 2},
        "garbled": {"malformed": True},
        "cached": {"reply": "ok", "usage": {"prompt_tokens": 40, "completion_tokens": 2}},
    }
}


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SCENARIO, seed=1) as server:
        yield server


@pytest.fixture
async def provider(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AnthropicMessagesProvider]:
    monkeypatch.setenv("RG_TEST_ANTHROPIC_KEY", "sk-ant-test")
    assert sim.url is not None
    cfg = AnthropicProvider(
        protocol="anthropic", base_url=sim.url, api_key_env="RG_TEST_ANTHROPIC_KEY", default_max_tokens=321
    )
    p = AnthropicMessagesProvider("anth", cfg)
    await p.start()
    yield p
    await p.close()


def dep(model: str) -> DeploymentConfig:
    return DeploymentConfig(provider="anth", model=model)


def req(**kw: Any) -> ChatRequest:
    body: dict[str, Any] = {
        "model": "route",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    }
    body.update(kw)
    return parse_chat_request(orjson.dumps(body))


async def stream_chunks(p: AnthropicMessagesProvider, model: str, **kw: Any) -> list[dict[str, Any]]:
    opened = await attempt_stream(p, dep(model), req(stream=True, **kw), stream_usage=True)
    events = [ev for ev, _ in opened.buffered]
    async for raw in opened.chunks:
        events += opened.decoder.feed(raw)
    opened.resp.release()
    out = []
    for ev in events:
        assert ev.data is not None
        out.append({"done": True} if ev.data == b"[DONE]" else orjson.loads(ev.data))
    return out


# --------------------------------------------------------------------------------------- adapter


async def test_completion_is_openai_shaped(provider: AnthropicMessagesProvider, sim: SimServer) -> None:
    comp = await attempt_completion(provider, dep("claude-x"), req())
    data = orjson.loads(comp.body)
    assert data["object"] == "chat.completion" and data["id"].startswith("msg_")
    assert data["choices"][0]["message"]["content"] == REPLY
    assert comp.finish_reason == "stop"
    assert (
        comp.usage is not None
        and comp.usage.prompt_tokens == 2 + 3 + 1 + 3
        and comp.usage.completion_tokens == 4
    )
    sent = sim.requests("claude-x")[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "sk-ant-test"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent["headers"]
    assert sent["body"] == {
        "model": "claude-x",
        "max_tokens": 321,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hi"}],
    }


async def test_stream_is_openai_sse_with_usage_and_done(provider: AnthropicMessagesProvider) -> None:
    chunks = await stream_chunks(provider, "claude-x")
    assert chunks[-1] == {"done": True}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1] if c.get("choices"))
    assert text == REPLY
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 4


async def test_tool_call_non_stream_and_stream(provider: AnthropicMessagesProvider, sim: SimServer) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    comp = await attempt_completion(provider, dep("tool"), req(tools=tools, tool_choice="required"))
    msg = orjson.loads(comp.body)["choices"][0]["message"]
    assert comp.finish_reason == "tool_calls"
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"city": "東京"}
    assert msg["tool_calls"][0]["id"].startswith("toolu_")
    assert sim.requests("tool")[-1]["body"]["tool_choice"] == {"type": "any"}
    chunks = await stream_chunks(provider, "tool", tools=tools)
    args = "".join(
        tc["function"].get("arguments", "")
        for c in chunks[:-1]
        if c.get("choices")
        for tc in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert json.loads(args) == {"city": "東京"}
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c.get("choices")][-1] == "tool_calls"


@pytest.mark.parametrize(
    ("model", "status", "cls"),
    [
        ("over", 529, ErrorClass.SERVER_ERROR),
        ("limited", 429, ErrorClass.RATE_LIMITED),
        ("geo", 403, ErrorClass.REGION_BLOCKED),
        ("bad", 400, ErrorClass.CLIENT_ERROR),
    ],
)
async def test_upstream_errors_are_classified(
    provider: AnthropicMessagesProvider, model: str, status: int, cls: ErrorClass
) -> None:
    with pytest.raises(UpstreamError) as exc:
        await attempt_completion(provider, dep(model), req())
    assert exc.value.upstream_status == status and exc.value.error_class is cls
    assert orjson.loads(exc.value.upstream_body or b"")["type"] == "error"


async def test_rate_limit_keeps_retry_after(provider: AnthropicMessagesProvider) -> None:
    with pytest.raises(UpstreamError) as exc:
        await attempt_completion(provider, dep("limited"), req())
    assert exc.value.retry_after_s == 1.0 and exc.value.retryable


async def test_stream_cut_before_content_is_stream_cut(provider: AnthropicMessagesProvider) -> None:
    with pytest.raises(UpstreamError) as exc:
        await attempt_stream(provider, dep("cut"), req(stream=True), stream_usage=True)
    assert exc.value.error_class in (ErrorClass.STREAM_CUT, ErrorClass.CONNECTION)


async def test_stream_cut_after_content_has_no_done(provider: AnthropicMessagesProvider) -> None:
    opened = await attempt_stream(provider, dep("cut2"), req(stream=True), stream_usage=True)
    assert opened.watch.content_seen
    try:
        async for raw in opened.chunks:
            for ev in opened.decoder.feed(raw):
                opened.watch.inspect(ev)
    except UpstreamError:
        pass  # a connection error is an equally good signal of the cut
    finally:
        opened.resp.close()
    assert not opened.watch.done and opened.watch.finish_reason is None


async def test_malformed_bodies_are_malformed(provider: AnthropicMessagesProvider) -> None:
    with pytest.raises(UpstreamError) as exc:
        await attempt_completion(provider, dep("garbled"), req())
    assert exc.value.error_class is ErrorClass.MALFORMED
    with pytest.raises(UpstreamError) as exc:
        await stream_chunks(provider, "garbled")
    assert exc.value.error_class is ErrorClass.MALFORMED


async def test_untranslatable_request_is_400_before_any_upstream_call(
    provider: AnthropicMessagesProvider, sim: SimServer
) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        await attempt_completion(provider, dep("claude-x"), req(temperature=1.7))
    assert exc.value.param == "temperature"
    assert sim.stats()["total"] == 0


async def test_regional_base_url(sim: SimServer) -> None:
    assert sim.url is not None
    cfg = AnthropicProvider(
        protocol="anthropic",
        base_url="http://127.0.0.1:9/v1",
        api_key_env=None,
        region_base_urls={"EU": sim.url},
    )
    p = AnthropicMessagesProvider("anth", cfg)
    try:
        comp = await attempt_completion(p, dep("claude-x"), req(), region="eu")
        assert orjson.loads(comp.body)["choices"][0]["message"]["content"] == REPLY
    finally:
        await p.close()


class _Inner:
    """An upstream stream delivered in given pieces (for byte-boundary tests)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            yield p

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name", ["stream_text.sse", "stream_tool_use.sse"])
async def test_fixture_streams_split_at_every_byte(name: str) -> None:
    """The adapter's stream path, upstream bytes split at every position (CJK/emoji/RTL inside)."""
    from relaygate.protocols.translate_anthropic import AnthropicToOpenAIStream

    raw = (FIX / name).read_bytes()
    expected: bytes | None = None
    for cut in range(1, len(raw), 3):
        resp = TranslatedResponse(
            200,
            {},
            inner=_Inner([raw[:cut], raw[cut:]]),  # type: ignore[arg-type]
            decoder=AnthropicStreamDecoder(AnthropicToOpenAIStream()),
        )
        out = b"".join([c async for c in resp.iter_chunks()])
        if expected is None:
            expected = out
        assert out == expected
    assert expected is not None and expected.endswith(b"data: [DONE]\n\n")
    dec = SSEDecoder()
    texts = [orjson.loads(ev.data) for ev in dec.feed(expected) if ev.data and ev.data != b"[DONE]"]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in texts if c.get("choices"))
    assert content in ("Hello, 世界 🌏! שלום עולם", "Okay, let me check the weather in 北京:")


async def test_in_band_error_event_is_classified() -> None:
    from relaygate.protocols.translate_anthropic import AnthropicToOpenAIStream

    raw = (FIX / "stream_error.sse").read_bytes()
    decoder = AnthropicStreamDecoder(AnthropicToOpenAIStream())
    resp = TranslatedResponse(200, {}, inner=_Inner([raw]), decoder=decoder)  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as exc:
        _ = [c async for c in resp.iter_chunks()]
    assert exc.value.error_class is ErrorClass.SERVER_ERROR


# ------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("status", "fixture", "headers", "cls"),
    [
        (529, "error_overloaded.json", {}, ErrorClass.SERVER_ERROR),
        (429, "error_rate_limit.json", {"retry-after": "7"}, ErrorClass.RATE_LIMITED),
        (403, "error_forbidden_region.json", {}, ErrorClass.REGION_BLOCKED),
        (400, "error_invalid_request.json", {}, ErrorClass.CLIENT_ERROR),
        (400, "error_credit.json", {}, ErrorClass.QUOTA_EXHAUSTED),
    ],
)
def test_classify_documented_bodies(
    status: int, fixture: str, headers: dict[str, str], cls: ErrorClass
) -> None:
    err = classify_anthropic_error(status, headers, (FIX / fixture).read_bytes())
    assert err.error_class is cls and err.upstream_status == status
    if headers:
        assert err.retry_after_s == 7.0


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            403,
            {
                "type": "error",
                "error": {
                    "type": "permission_error",
                    "message": "Your API key does not have permission to use the specified resource.",
                },
            },
            ErrorClass.AUTH,
        ),
        (
            403,
            {
                "type": "error",
                "error": {
                    "type": "permission_error",
                    "message": "Country, region, or territory not supported",
                },
            },
            ErrorClass.REGION_BLOCKED,
        ),
        (
            401,
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
            ErrorClass.AUTH,
        ),
        (
            500,
            {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
            ErrorClass.SERVER_ERROR,
        ),
        (
            200,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ErrorClass.SERVER_ERROR,
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
            ErrorClass.CONTEXT_LENGTH,
        ),
    ],
)
def test_classify_table(status: int, body: dict[str, Any], cls: ErrorClass) -> None:
    assert classify_anthropic_error(status, {}, orjson.dumps(body)).error_class is cls


# -------------------------------------------------------------------------------- config, runtime


def test_config_and_build_providers() -> None:
    cfg = Config.model_validate(
        {
            "providers": {"claude": {"protocol": "anthropic", "jurisdiction": "US"}},
            "routes": {"r": {"deployments": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}},
        }
    )
    pc = cfg.providers["claude"]
    assert isinstance(pc, AnthropicProvider)
    assert pc.base_url == "https://api.anthropic.com/v1" and pc.anthropic_version == "2023-06-01"
    assert pc.default_max_tokens == 4096 and pc.api_key_env == "ANTHROPIC_API_KEY"
    built = build_providers(cfg)
    assert isinstance(built["claude"], AnthropicMessagesProvider)
    with pytest.raises(ValueError):
        AnthropicProvider.model_validate({"protocol": "anthropic", "anthropic_version": "latest"})
    with pytest.raises(ValueError):
        AnthropicProvider.model_validate({"protocol": "anthropic", "betas": ["x"]})


# ------------------------------------------------------------------------ simulator, official SDK


def sdk(sim: SimServer) -> anthropic.AsyncAnthropic:
    assert sim.url is not None
    return anthropic.AsyncAnthropic(base_url=sim.url.removesuffix("/v1"), api_key="sk-ant-sim", max_retries=0)


async def test_sim_answers_the_official_sdk(sim: SimServer) -> None:
    client = sdk(sim)
    msg = await client.messages.create(
        model="claude-x", max_tokens=64, system="s", messages=[{"role": "user", "content": "hi there"}]
    )
    assert msg.content[0].type == "text" and msg.content[0].text == REPLY
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens == 1 + 3 + 2 + 3
    async with client.messages.stream(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == REPLY and len(pieces) > 1 and final.usage.output_tokens == 4
    truncated = await client.messages.create(
        model="claude-x", max_tokens=2, messages=[{"role": "user", "content": "hi"}]
    )
    assert truncated.stop_reason == "max_tokens"
    await client.close()


async def test_sim_tool_use_with_the_official_sdk(sim: SimServer) -> None:
    client = sdk(sim)
    tools: Any = [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    async with client.messages.stream(
        model="tool", max_tokens=64, tools=tools, messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use" and block.input == {"city": "東京"} and block.id.startswith("toolu_")
    none = await client.messages.create(
        model="tool",
        max_tokens=64,
        tools=tools,
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "x"}],
    )
    assert none.content[0].type == "text"
    await client.close()


async def test_sim_errors_raise_the_sdk_exceptions(sim: SimServer) -> None:
    client = sdk(sim)
    msgs: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.InternalServerError) as over:
        await client.messages.create(model="over", max_tokens=5, messages=msgs)
    assert over.value.status_code == 529 and over.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model="limited", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.PermissionDeniedError):
        await client.messages.create(model="geo", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model="claude-x", max_tokens=5, messages=msgs, extra_body={"temperature": 1.5}
        )
    await client.close()


async def test_sim_requires_anthropic_version(sim: SimServer) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{sim.url}/messages",
            json={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
        ) as r,
    ):
        assert r.status == 400
        body = await r.json()
    assert body["type"] == "error" and "anthropic-version" in body["error"]["message"]
