"""The Gemini adapter against the simulator's Gemini protocol, and Gemini error classification."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from relaygate.config import load_config_text
from relaygate.config.schema import Config, DeploymentConfig, GeminiProvider
from relaygate.errors import ErrorClass, InvalidRequestError, UpstreamError
from relaygate.protocols.openai import parse_chat_request
from relaygate.protocols.openai_stream import ChunkKind, StreamWatch
from relaygate.protocols.sse import SSEDecoder
from relaygate.providers.gemini import GeminiAdapter, classify_gemini_error
from relaygate.routing.attempts import attempt_completion, attempt_stream
from relaygate.runtime import build_providers
from relaygate.sim import SimHandle, run_sim_in_thread
from relaygate.sim.gemini_wire import gemini_error, gemini_request_as_openai

FIX = Path(__file__).parent.parent / "fixtures" / "gemini"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
SCENARIO: dict[str, Any] = {
    "models": {
        "g-text": {"reply": "你好 world 👋 مرحبا"},
        "g-tool": {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        "g-region": {"error": {"preset": "region_block_403"}},
        "g-rate": {"error": {"preset": "rate_limit"}},
        "g-quota": {"error": {"preset": "insufficient_quota"}},
        "g-busy": {"error": {"preset": "overloaded"}},
        "g-500": {"error": {"preset": "server_error"}},
        "g-auth": {"error": {"preset": "auth"}},
        "g-bad": {"error": {"preset": "bad_request"}},
        "g-ctx": {"error": {"preset": "context_length"}},
        "g-safety": {"error": {"preset": "content_policy"}},
        "g-cut": {"reply": "one two three four", "cut_after_chunks": 2},
        "g-cut-all": {"reply": "one two", "cut_after_chunks": 5},
        "g-garbled": {"malformed": True},
        "g-long": {"reply": "a b c d e f"},
    }
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread(SCENARIO) as handle:
        yield handle


def adapter(sim: SimHandle, monkeypatch: pytest.MonkeyPatch | None = None) -> GeminiAdapter:
    if monkeypatch is not None:
        monkeypatch.setenv("GEMINI_TEST_KEY", "AIza-test-key")
    base = sim.url.removesuffix("/v1") + "/v1beta"
    cfg = GeminiProvider(protocol="gemini", base_url=base, api_key_env="GEMINI_TEST_KEY")
    return GeminiAdapter("gem", cfg)


def dep(model: str) -> DeploymentConfig:
    return DeploymentConfig(provider="gem", model=model)


def chat_request(model: str, *, stream: bool = False, **kw: Any) -> Any:
    body = {"model": "alias", "messages": [{"role": "user", "content": "hi there"}], "stream": stream, **kw}
    return parse_chat_request(orjson.dumps(body))


async def test_non_stream_text(sim: SimHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    a = adapter(sim, monkeypatch)
    try:
        done = await attempt_completion(a, dep("g-text"), chat_request("g-text", max_tokens=50))
    finally:
        await a.close()
    data = orjson.loads(done.body)
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "你好 world 👋 مرحبا"
    assert done.finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens == 2 + 3 and done.usage.completion_tokens == 4
    logged = sim.requests("g-text")[-1]
    assert logged["path"] == "/v1beta/models/g-text:generateContent"
    assert logged["headers"]["x-goog-api-key"] == "AIza-test-key"
    assert "authorization" not in logged["headers"]
    assert logged["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "hi there"}]}],
        "generationConfig": {"maxOutputTokens": 50},
    }


async def test_non_stream_truncated_and_tool_call(sim: SimHandle) -> None:
    a = adapter(sim)
    try:
        short = await attempt_completion(a, dep("g-long"), chat_request("g-long", max_tokens=2))
        tool = await attempt_completion(a, dep("g-tool"), chat_request("g-tool", tools=TOOLS))
    finally:
        await a.close()
    assert short.finish_reason == "length"
    assert orjson.loads(short.body)["choices"][0]["message"]["content"] == "a b"
    message = orjson.loads(tool.body)["choices"][0]["message"]
    assert tool.finish_reason == "tool_calls"
    call = message["tool_calls"][0]
    assert call["id"].startswith("call_") and call["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }


async def read_stream(a: GeminiAdapter, model: str, **kw: Any) -> tuple[list[Any], StreamWatch]:
    opened = await attempt_stream(a, dep(model), chat_request(model, stream=True, **kw), stream_usage=True)
    events = [ev for ev, _ in opened.buffered]
    try:
        if not opened.ended:
            async for chunk in opened.chunks:
                events.extend(opened.decoder.feed(chunk))
    finally:
        opened.resp.release()
    watch = StreamWatch()
    kinds = [watch.inspect(ev) for ev in events]
    assert ChunkKind.ERROR not in kinds
    return [orjson.loads(ev.data) if ev.data != b"[DONE]" else "[DONE]" for ev in events if ev.data], watch


async def test_stream_text_with_usage(sim: SimHandle) -> None:
    a = adapter(sim)
    try:
        events, watch = await read_stream(a, "g-text")
    finally:
        await a.close()
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e != "[DONE]" and e["choices"]
    )
    assert text == "你好 world 👋 مرحبا"
    assert watch.complete and watch.finish_reason == "stop"
    assert watch.usage is not None and watch.usage.completion_tokens == 4
    assert events[-1] == "[DONE]"
    assert sim.requests("g-text")[-1]["path"] == "/v1beta/models/g-text:streamGenerateContent"


async def test_stream_tool_call(sim: SimHandle) -> None:
    a = adapter(sim)
    try:
        events, watch = await read_stream(a, "g-tool", tools=TOOLS)
    finally:
        await a.close()
    calls = [
        tc for e in events if e != "[DONE]" for c in e["choices"] for tc in c["delta"].get("tool_calls") or []
    ]
    assert [(c["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "get_weather", '{"city":"Paris"}')
    ]
    assert watch.finish_reason == "tool_calls"


async def test_cut_stream_is_not_complete(sim: SimHandle) -> None:
    a = adapter(sim)
    try:
        for model in ("g-cut", "g-cut-all"):
            opened = await attempt_stream(a, dep(model), chat_request(model, stream=True), stream_usage=True)
            try:
                async for chunk in opened.chunks:
                    for ev in opened.decoder.feed(chunk):
                        opened.watch.inspect(ev)
            except UpstreamError:
                pass  # the connection drop may surface as a transport error
            finally:
                opened.resp.close()
            assert opened.watch.content_seen
            assert not opened.watch.done and opened.watch.finish_reason is None
    finally:
        await a.close()


@pytest.mark.parametrize(
    ("model", "cls", "status"),
    [
        ("g-region", ErrorClass.REGION_BLOCKED, 400),
        ("g-rate", ErrorClass.RATE_LIMITED, 429),
        ("g-quota", ErrorClass.QUOTA_EXHAUSTED, 429),
        ("g-busy", ErrorClass.SERVER_ERROR, 503),
        ("g-500", ErrorClass.SERVER_ERROR, 500),
        ("g-auth", ErrorClass.AUTH, 400),
        ("g-bad", ErrorClass.CLIENT_ERROR, 400),
        ("g-ctx", ErrorClass.CONTEXT_LENGTH, 400),
        ("g-safety", ErrorClass.CONTENT_POLICY, 400),
        ("g-garbled", ErrorClass.MALFORMED, 200),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_sim_errors_are_classified(
    sim: SimHandle, model: str, cls: ErrorClass, status: int, stream: bool
) -> None:
    a = adapter(sim)
    try:
        with pytest.raises(UpstreamError) as exc:
            if stream:
                await attempt_stream(a, dep(model), chat_request(model, stream=True), stream_usage=True)
            else:
                await attempt_completion(a, dep(model), chat_request(model))
    finally:
        await a.close()
    assert exc.value.error_class is cls
    assert exc.value.upstream_status == status
    if model == "g-rate":
        assert exc.value.retry_after_s == 1.0  # RetryInfo retryDelay "1s"
    if model == "g-bad":
        err = orjson.loads(exc.value.upstream_body or b"{}")["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "INVALID_ARGUMENT"


async def test_translation_errors_never_reach_the_upstream(sim: SimHandle) -> None:
    a = adapter(sim)
    before = sim.stats()["total"]
    try:
        with pytest.raises(InvalidRequestError) as exc:
            await a.chat(dep("g-text"), chat_request("g-text", logprobs=True), stream_usage=False)
    finally:
        await a.close()
    assert exc.value.param == "logprobs"
    assert sim.stats()["total"] == before


async def test_sim_without_alt_sse_streams_a_json_array(sim: SimHandle) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    base = sim.url.removesuffix("/v1")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/v1beta/models/g-long:streamGenerateContent", json=body) as r:
            arr = await r.json()
        async with s.post(f"{base}/v1beta/models/g-long:countTokens", json=body) as r:
            assert r.status == 404
        async with s.post(f"{base}/v1beta/models/g-long:generateContent", json={"contents": []}) as r:
            assert r.status == 400 and (await r.json())["error"]["status"] == "INVALID_ARGUMENT"
    assert len(arr) == 6 and arr[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "finishReason" not in arr[0]["candidates"][0]


def test_sim_request_view_and_error_shapes() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "a b"}]},
            {"role": "model", "parts": [{"text": "c"}]},
        ],
        "generationConfig": {"maxOutputTokens": 3},
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
    }
    assert gemini_request_as_openai(body) == {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "a b"},
            {"role": "assistant", "content": "c"},
        ],
        "max_tokens": 3,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "none",
    }
    google = {"error": {"code": 418, "message": "teapot", "status": "UNKNOWN"}}
    assert gemini_error(418, google) == (418, google)
    assert gemini_error(502, "<html>") == (502, "<html>")
    status, shaped = gemini_error(404, {"error": {"message": "nope", "type": "x", "code": None}})
    assert status == 404 and shaped == {"error": {"code": 404, "message": "nope", "status": "NOT_FOUND"}}


# --- classification on the documented bodies ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "retry_after"),
    [
        ("error_rate_limit", ErrorClass.RATE_LIMITED, 39.0),
        ("error_daily_quota", ErrorClass.QUOTA_EXHAUSTED, None),
        ("error_invalid_key", ErrorClass.AUTH, None),
        ("error_location", ErrorClass.REGION_BLOCKED, None),
        ("error_overloaded", ErrorClass.SERVER_ERROR, None),
        ("error_context", ErrorClass.CONTEXT_LENGTH, None),
    ],
)
def test_documented_error_bodies(name: str, cls: ErrorClass, retry_after: float | None) -> None:
    body = (FIX / f"{name}.json").read_bytes()
    err = classify_gemini_error(orjson.loads(body)["error"]["code"], {}, body)
    assert err.error_class is cls
    assert err.retry_after_s == retry_after
    assert err.retryable is (cls in (ErrorClass.RATE_LIMITED, ErrorClass.SERVER_ERROR))


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            429,
            {
                "error": {
                    "code": 429,
                    "message": "Resource has been exhausted (e.g. check quota).",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
            ErrorClass.RATE_LIMITED,
        ),
        (
            429,
            {
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
            ErrorClass.QUOTA_EXHAUSTED,
        ),
        (
            429,
            {"error": {"code": 429, "message": "Too many requests", "status": "RESOURCE_EXHAUSTED"}},
            ErrorClass.RATE_LIMITED,
        ),
        (
            403,
            {
                "error": {
                    "code": 403,
                    "message": "Method doesn't allow unregistered callers.",
                    "status": "PERMISSION_DENIED",
                }
            },
            ErrorClass.AUTH,
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "Gemini API free tier is not available in your country. "
                    "Please enable billing on your project in Google AI Studio.",
                    "status": "FAILED_PRECONDITION",
                }
            },
            ErrorClass.REGION_BLOCKED,
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "* GenerateContentRequest.contents: contents is not specified",
                    "status": "INVALID_ARGUMENT",
                }
            },
            ErrorClass.CLIENT_ERROR,
        ),
        (
            404,
            {"error": {"code": 404, "message": "models/nope is not found", "status": "NOT_FOUND"}},
            ErrorClass.CLIENT_ERROR,
        ),
        (
            504,
            {"error": {"code": 504, "message": "Deadline exceeded", "status": "DEADLINE_EXCEEDED"}},
            ErrorClass.SERVER_ERROR,
        ),
    ],
)
def test_gemini_error_table(status: int, body: dict[str, Any], cls: ErrorClass) -> None:
    assert classify_gemini_error(status, {}, orjson.dumps(body)).error_class is cls


def test_retry_after_header_wins_over_retry_info() -> None:
    body = (FIX / "error_rate_limit.json").read_bytes()
    assert classify_gemini_error(429, {"retry-after": "3"}, body).retry_after_s == 3.0


# --- config and runtime ----------------------------------------------------------------------


def test_config_builds_a_gemini_adapter() -> None:
    cfg: Config = load_config_text(
        """
providers:
  google: {protocol: gemini, api_key_env: GEMINI_API_KEY, headers: {x-extra: "1"}}
routes:
  chat: {deployments: [{provider: google, model: gemini-2.0-flash}]}
""",
        "t.yaml",
    )
    pc = cfg.providers["google"]
    assert (
        isinstance(pc, GeminiProvider) and pc.base_url == "https://generativelanguage.googleapis.com/v1beta"
    )
    built = build_providers(cfg)["google"]
    assert isinstance(built, GeminiAdapter)
    assert built._headers["x-extra"] == "1"


def test_sse_decoder_sees_crlf_events_from_the_sim_shape() -> None:
    raw = (FIX / "text_stream.sse").read_bytes()
    assert len([e for e in SSEDecoder().feed(raw) if e.data]) == 3


def test_openai_sdk_parses_translated_objects() -> None:
    """The official SDK's own models accept what the adapter produces."""
    from relaygate.protocols.translate_gemini import GeminiToOpenAIStream, gemini_response_to_openai

    resp = gemini_response_to_openai(
        orjson.loads((FIX / "function_call_response.json").read_bytes()), model="g"
    )
    parsed = openai.types.chat.ChatCompletion.model_validate(resp)
    assert parsed.choices[0].message.tool_calls and parsed.usage and parsed.usage.total_tokens == 58
    chunks = GeminiToOpenAIStream(model="g").feed({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]})
    assert openai.types.chat.ChatCompletionChunk.model_validate(chunks[0]).choices[0].delta.content == "hi"


# --- the official openai SDK through the real gateway, served by the Gemini protocol -----------


@pytest.fixture(scope="module")
def gateway(sim: SimHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.e2e.harness import run_gateway

    base = sim.url.removesuffix("/v1") + "/v1beta"
    cfg = f"""
providers:
  google: {{protocol: gemini, base_url: "{base}"}}
  google_eu: {{protocol: gemini, base_url: "{base}"}}
  backup: {{protocol: openai, base_url: "{sim.url}"}}
routes:
  text: {{deployments: [{{provider: google, model: g-text}}]}}
  tool: {{deployments: [{{provider: google, model: g-tool}}]}}
  blocked: {{deployments: [{{provider: google_eu, model: g-region}}, {{provider: backup, model: g-long}}]}}
auth: {{mode: open}}
"""
    db = tmp_path_factory.mktemp("gw") / "t.db"
    with run_gateway(cfg, storage_url=f"sqlite:///{db}") as gw:
        yield gw


def sdk(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="sk-test", max_retries=0, timeout=20)


def test_openai_sdk_served_by_gemini(gateway: Any) -> None:
    client = sdk(gateway)
    resp = client.chat.completions.create(model="text", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "你好 world 👋 مرحبا"
    assert resp.usage is not None and resp.usage.completion_tokens == 4
    with client.chat.completions.stream(model="text", messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "你好 world 👋 مرحبا"
    assert final.choices[0].finish_reason == "stop"


def test_openai_sdk_tool_round_trip_served_by_gemini(gateway: Any, sim: SimHandle) -> None:
    client = sdk(gateway)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    with client.chat.completions.stream(model="tool", messages=messages, tools=TOOLS) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls and message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"})
    client.chat.completions.create(model="tool", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    sent = sim.requests("g-tool")[-1]["body"]["contents"]
    assert sent[1]["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert sent[2]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"output": "sunny"}}


def test_region_blocked_gemini_fails_over_to_openai_protocol(gateway: Any) -> None:
    client = sdk(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model="blocked", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "a b c d e f"
    assert "backup" in (raw.headers.get("x-relaygate-deployment") or "")


def test_untranslatable_request_is_a_400_for_the_sdk(gateway: Any) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk(gateway).chat.completions.create(
            model="text", messages=[{"role": "user", "content": "hi"}], logit_bias={"1": 5}
        )
    assert "logit_bias" in str(exc.value)
    with pytest.raises(openai.BadRequestError) as exc:
        sdk(gateway).chat.completions.create(
            model="text", messages=[{"role": "user", "content": "hi"}], stream=True, logprobs=True
        )
    assert "logprobs" in str(exc.value)


def test_probe_requests_without_parsed_data_are_translated(sim: SimHandle) -> None:
    """``Gateway.probe`` sends a ChatRequest whose ``data`` is empty: the body is parsed here."""
    from relaygate.protocols.openai import ChatRequest

    body = b'{"model":"g-text","messages":[{"role":"user","content":"ping"}],"max_tokens":1}'
    req = ChatRequest(body=body, data={}, model="g-text", stream=False, include_usage=False)
    assert orjson.loads(adapter(sim).build_body(req)) == {
        "contents": [{"role": "user", "parts": [{"text": "ping"}]}],
        "generationConfig": {"maxOutputTokens": 1},
    }
