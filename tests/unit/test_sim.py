"""The provider simulator, driven over real HTTP by the openai SDK and by raw aiohttp."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from relaygate.sim import (
    PRESETS,
    Scenario,
    ScenarioError,
    SimHandle,
    SimServer,
    load_scenario,
    run_sim_in_thread,
)
from relaygate.sim.wire import split_words

MSGS: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there you"},
]
PROMPT_TOKENS = 2 + 3 + 3 + 3  # words + 3 per message
REPLY = "The  quick brown fox\njumps."

SCENARIO: dict[str, Any] = {
    "models": {
        "gpt-x": {"reply": REPLY},
        "flaky": {"steps": [{"status": 503, "headers": {"Retry-After": 2}}, {"status": 200}]},
        "blocked": {"error": {"preset": "region_block_403"}},
        "cut": {"reply": "one two three four five", "cut_after_chunks": 2},
        "rst": {"reset": True},
        "hang": {"hang": True},
        "garbled": {"malformed": True},
        "slow": {"latency_ms": 150, "reply": "late"},
        "tool": {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        "raw": {"status": 502, "body": "<html>bad gateway</html>"},
        "recovering": {"error": {"preset": "overloaded"}, "steps": [{}, {"status": 200, "reply": "back"}]},
    }
}


@pytest.fixture(scope="module")
def handle() -> Iterator[SimHandle]:
    with run_sim_in_thread(SCENARIO) as h:
        yield h


@pytest.fixture
def sim_handle(handle: SimHandle) -> SimHandle:
    handle.reset()
    return handle


@pytest.fixture
def client(sim_handle: SimHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim_handle.url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SCENARIO) as server:
        yield server


async def _post(url: str, body: Any, *, raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        data = raw if raw is not None else orjson.dumps(body)
        async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
            return resp.status, dict(resp.headers), await resp.read()


def _sse_payloads(text: str) -> list[str]:
    assert text.endswith("data: [DONE]\n\n")
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def test_plain_completion(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="gpt-x", messages=MSGS)
    assert resp.object == "chat.completion" and resp.model == "gpt-x" and resp.id.startswith("chatcmpl-")
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == REPLY
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (PROMPT_TOKENS, 5)
    assert resp.usage.total_tokens == PROMPT_TOKENS + 5


def test_unlisted_model_gets_default_reply(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="anything", messages=MSGS)
    assert resp.choices[0].message.content == "Hello from the simulator."


def test_stream_concatenates_to_reply_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-x",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_stream_wire_format(sim: SimServer) -> None:
    body = {"model": "gpt-x", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, raw = await _post(f"{sim.url}/chat/completions", body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    payloads = _sse_payloads(raw.decode())
    assert payloads[-1] == "[DONE]"
    objs = [orjson.loads(p) for p in payloads[:-1]]
    assert all(o["object"] == "chat.completion.chunk" and o["model"] == "gpt-x" for o in objs)
    assert len({o["id"] for o in objs}) == 1
    assert [o["choices"][0]["delta"].get("content") for o in objs[1:-2]] == split_words(REPLY)
    assert objs[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert all(o["usage"] is None for o in objs[:-1])


async def test_stream_without_usage_option_has_no_usage_chunk(sim: SimServer) -> None:
    _, _, raw = await _post(
        f"{sim.url}/chat/completions", {"model": "gpt-x", "messages": MSGS, "stream": True}
    )
    objs = [orjson.loads(p) for p in _sse_payloads(raw.decode())[:-1]]
    assert objs[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in o for o in objs)


def test_step_sequence_503_then_200_repeats_last(client: openai.OpenAI, sim_handle: SimHandle) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="flaky", messages=MSGS)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "2"
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "service_unavailable_error"
    for _ in range(2):
        resp = client.chat.completions.create(model="flaky", messages=MSGS)
        assert resp.choices[0].finish_reason == "stop"
    assert sim_handle.stats()["models"]["flaky"] == {"requests": 3}


def test_step_status_replaces_model_level_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="recovering", messages=MSGS)
    resp = client.chat.completions.create(model="recovering", messages=MSGS)
    assert resp.choices[0].message.content == "back"


def test_region_block_403_is_permission_denied(client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="blocked", messages=MSGS)
    assert info.value.code == "unsupported_country_region_territory"
    assert info.value.body == {
        "message": "Country, region, or territory not supported",
        "type": "request_forbidden",
        "param": None,
        "code": "unsupported_country_region_territory",
    }


@pytest.mark.parametrize("name", sorted(PRESETS))
async def test_presets_answer_their_status_and_code(sim: SimServer, name: str) -> None:
    sim.set_scenario({"models": {"m": {"error": {"preset": name}}}})
    status, headers, raw = await _post(f"{sim.url}/chat/completions", {"model": "m", "messages": MSGS})
    preset = PRESETS[name]
    assert status == preset.status
    assert orjson.loads(raw) == preset.body()
    assert set(preset.headers) <= set(headers)


def test_rate_limit_preset_has_retry_after(client: openai.OpenAI, sim_handle: SimHandle) -> None:
    sim_handle.set_scenario({"models": {"m": {"error": {"preset": "rate_limit"}}}})
    try:
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=MSGS)
        assert info.value.code == "rate_limit_exceeded"
        assert info.value.response.headers["retry-after"] == "1"
    finally:
        sim_handle.set_scenario(SCENARIO)


def test_cut_stream_raises_connection_error_without_finish_reason(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="cut", messages=MSGS, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for c in stream:
            received.append(c)
    assert "".join(c.choices[0].delta.content or "" for c in received) == "one two "
    assert all(c.choices[0].finish_reason is None for c in received)


def test_reset_is_connection_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="rst", messages=MSGS)


def test_hang_times_out(sim_handle: SimHandle) -> None:
    with openai.OpenAI(base_url=sim_handle.url, api_key="x", max_retries=0, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="hang", messages=MSGS)
        assert time.monotonic() - started < 3


async def test_stop_releases_hanging_requests(sim: SimServer) -> None:
    pending = asyncio.create_task(_post(f"{sim.url}/chat/completions", {"model": "hang", "messages": MSGS}))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 1
    with pytest.raises(aiohttp.ClientError):
        await pending


async def test_malformed_bodies(sim: SimServer) -> None:
    status, _, raw = await _post(f"{sim.url}/chat/completions", {"model": "garbled", "messages": MSGS})
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    body = {"model": "garbled", "messages": MSGS, "stream": True}
    _, _, raw = await _post(f"{sim.url}/chat/completions", body)
    payloads = _sse_payloads(raw.decode())
    orjson.loads(payloads[0])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(payloads[1])


async def test_latency_delays_response(sim: SimServer) -> None:
    started = time.monotonic()
    status, _, _ = await _post(f"{sim.url}/chat/completions", {"model": "slow", "messages": MSGS})
    assert status == 200 and time.monotonic() - started >= 0.15


async def test_max_tokens_truncates_with_length(sim: SimServer) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        body = {"model": "gpt-x", "messages": MSGS, field: 2}
        _, _, raw = await _post(f"{sim.url}/chat/completions", body)
        choice = orjson.loads(raw)["choices"][0]
        assert choice["finish_reason"] == "length" and choice["message"]["content"] == "The  quick"
        assert orjson.loads(raw)["usage"]["completion_tokens"] == 2


def test_tool_call(client: openai.OpenAI) -> None:
    tools: list[ChatCompletionFunctionToolParam] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    resp = client.chat.completions.create(model="tool", messages=MSGS, tools=tools)
    assert resp.choices[0].finish_reason == "tool_calls"
    calls = resp.choices[0].message.tool_calls or []
    assert [(c.id[:5], c.function.name, c.function.arguments) for c in calls if c.type == "function"] == [
        ("call_", "get_weather", '{"city":"Paris"}')
    ]
    chunks = list(client.chat.completions.create(model="tool", messages=MSGS, tools=tools, stream=True))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    plain = client.chat.completions.create(model="tool", messages=MSGS, tools=tools, tool_choice="none")
    assert plain.choices[0].finish_reason == "stop"


async def test_bad_requests_are_openai_shaped_400(sim: SimServer) -> None:
    status, _, raw = await _post(f"{sim.url}/chat/completions", None, raw=b"{not json")
    assert status == 400
    assert set(orjson.loads(raw)["error"]) == {"message", "type", "param", "code"}
    status, _, raw = await _post(f"{sim.url}/chat/completions", {"model": "gpt-x"})
    assert status == 400 and orjson.loads(raw)["error"]["param"] == "messages"
    assert sim.stats()["total"] == 0


async def test_string_body_is_sent_verbatim(sim: SimServer) -> None:
    status, headers, raw = await _post(f"{sim.url}/chat/completions", {"model": "raw", "messages": MSGS})
    assert (status, raw) == (502, b"<html>bad gateway</html>")
    assert headers["Content-Type"].startswith("text/plain")


async def test_control_api(sim: SimServer) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-abc"}) as session:
        for model in ("gpt-x", "gpt-x", "slow"):
            async with session.post(f"{sim.url}/chat/completions", json={"model": model, "messages": MSGS}):
                pass
        base = str(sim.url).removesuffix("/v1")
        async with session.get(f"{base}/_sim/stats") as resp:
            assert await resp.json() == {
                "models": {"gpt-x": {"requests": 2}, "slow": {"requests": 1}},
                "total": 3,
            }
        async with session.get(f"{base}/_sim/requests", params={"model": "slow"}) as resp:
            logged = await resp.json()
        assert len(logged) == 1 and logged[0]["body"]["messages"] == MSGS
        assert logged[0]["headers"]["authorization"] == "Bearer sk-abc"
        async with session.get(f"{sim.url}/models") as resp:
            assert {m["id"] for m in (await resp.json())["data"]} == set(SCENARIO["models"])
        async with session.post(f"{base}/_sim/scenario", json={"models": {"only": {"reply": "x"}}}) as resp:
            assert resp.status == 200
        assert list(sim.scenario.models) == ["only"]
        async with session.post(f"{base}/_sim/scenario", json={"models": {"only": {"replay": "x"}}}) as resp:
            assert resp.status == 400 and "models.only.replay" in (await resp.json())["error"]["message"]
        async with session.post(f"{base}/_sim/reset") as resp:
            assert resp.status == 200
        assert sim.stats() == {"models": {}, "total": 0} and sim.requests() == []
        async with session.get(f"{sim.url}/embeddings") as resp:
            assert resp.status == 404 and "error" in await resp.json()


async def test_request_log_keeps_last_200(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        for i in range(205):
            body = {"model": "gpt-x", "messages": MSGS, "user": str(i)}
            async with session.post(f"{sim.url}/chat/completions", json=body):
                pass
    logged = sim.requests()
    assert len(logged) == 200 and logged[0]["body"]["user"] == "5" and sim.stats()["total"] == 205


@pytest.mark.parametrize(
    ("scenario", "where"),
    [
        ({"models": {"x": {"steps": [{"status": 302}]}}}, "models.x.steps.0.status"),
        ({"models": {"x": {"latencyms": 5}}}, "models.x.latencyms"),
        ({"models": {"x": {"error": {"preset": "nope"}}}}, "models.x.error.preset"),
        ({"defaults": {}}, "defaults"),
    ],
)
def test_invalid_scenario_names_the_field(scenario: dict[str, Any], where: str) -> None:
    with pytest.raises(ScenarioError, match=r"invalid scenario") as info:
        SimServer(scenario)
    assert where in str(info.value)


def test_load_yaml_scenario(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "default:\n  reply: hi\nmodels:\n  gpt-x:\n    steps:\n"
        "      - {status: 503, headers: {Retry-After: 2}}\n      - {status: 200}\n"
        "  fail-model:\n    error: {status: 451}\n"
    )
    scenario = load_scenario(path)
    assert isinstance(scenario, Scenario) and scenario.default.reply == "hi"
    steps, error = scenario.models["gpt-x"].steps, scenario.models["fail-model"].error
    assert steps is not None and steps[0].headers == {"Retry-After": "2"}
    assert error is not None and error.status == 451
    path.write_text("models: [1, 2\n")
    with pytest.raises(ScenarioError, match="not YAML"):
        load_scenario(path)


def test_split_words_round_trips() -> None:
    for text in ["", "  ", " lead", "a  b\n c ", "single"]:
        assert "".join(split_words(text)) == text


def test_sim_command_serves_until_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models:\n  gpt-x: {reply: from cli}\n")
    code = f"from relaygate.sim.cli import sim_command; sim_command('127.0.0.1', 0, {str(path)!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = line.split(" listening on ")[1].split()[0]
        with openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=5) as c:
            resp = c.chat.completions.create(model="gpt-x", messages=MSGS)
        assert resp.choices[0].message.content == "from cli"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_sim_command_rejects_invalid_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from relaygate.sim.cli import sim_command

    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  gpt-x: {reply: 1, bogus: true}\n")
    with pytest.raises(SystemExit) as info:
        sim_command("127.0.0.1", 0, path)
    assert info.value.code == 2
    assert "models.gpt-x.bogus" in capsys.readouterr().err


async def test_stream_timing_ttft_and_chunk_gap(sim: SimServer) -> None:
    sim.set_scenario({"models": {"m": {"reply": "a b c", "ttft_ms": 120, "chunk_gap_ms": 40}}})
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        body = {"model": "m", "messages": MSGS, "stream": True}
        async with session.post(f"{str(sim.url).removesuffix('/v1')}/chat/completions", json=body) as resp:
            async for line in resp.content:
                if line.strip():
                    arrivals.append((time.monotonic() - started, line))
    first_content = next(t for t, line in arrivals if b'"content":"a ' in line)
    assert first_content >= 0.12
    assert arrivals[-1][0] >= 0.12 + 3 * 0.04  # two gaps between words, one before the finish chunk
    assert arrivals[-1][1].strip() == b"data: [DONE]"


async def test_invalid_max_tokens_is_rejected(sim: SimServer) -> None:
    status, _, raw = await _post(
        f"{sim.url}/chat/completions", {"model": "gpt-x", "messages": MSGS, "max_tokens": 0}
    )
    assert status == 400 and orjson.loads(raw)["error"]["param"] == "max_tokens"


async def test_usage_override_and_jitter(sim: SimServer) -> None:
    sim.set_scenario({"models": {"m": {"usage": {"prompt_tokens": 1000}, "latency_jitter_ms": 30}}})
    _, _, raw = await _post(f"{sim.url}/chat/completions", {"model": "m", "messages": MSGS})
    usage = orjson.loads(raw)["usage"]
    assert usage == {"prompt_tokens": 1000, "completion_tokens": 4, "total_tokens": 1004}


# ------------------------------------------------- parallel tool calls and byte-split streams

PARALLEL: dict[str, Any] = {
    "models": {
        "par": {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "東京"}},
                {"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}},
            ]
        },
        "split": {"reply": "東京 👨‍👩‍👧 مرحبا", "split_bytes": 5},
        # a step's tool_call replaces the model level's tool_calls
        "stepped": {
            "tool_calls": [{"name": "a"}, {"name": "b"}],
            "steps": [{}, {"tool_call": {"name": "c"}}],
        },
    }
}
TOOLS_OA = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("get_weather", "get_time")
]
PAR_ARGS = ['{"city":"東京"}', '{"tz":"Asia/Tokyo"}']


async def _post_to(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, list[bytes]]:
    """Status and the body's reads as the client saw them (one entry per read)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=orjson.dumps(body), headers=headers or {}) as resp,
    ):
        return resp.status, [part async for part in resp.content.iter_any()]


async def test_parallel_tool_calls_openai_wire() -> None:
    async with SimServer(PARALLEL) as s:
        body = {"model": "par", "messages": MSGS, "tools": TOOLS_OA}
        _, _, raw = await _post(f"{s.url}/chat/completions", body)
        choice = orjson.loads(raw)["choices"][0]
        calls = choice["message"]["tool_calls"]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
            ("get_weather", PAR_ARGS[0]),
            ("get_time", PAR_ARGS[1]),
        ]
        assert len({c["id"] for c in calls}) == 2
        _, parts = await _post_to(f"{s.url}/chat/completions", {**body, "stream": True})
        deltas = [
            tc
            for p in _sse_payloads(b"".join(parts).decode())[:-1]
            for ch in orjson.loads(p)["choices"]
            for tc in ch["delta"].get("tool_calls") or []
        ]
        # both heads first, then the argument pieces interleaved across the two calls
        assert [d["index"] for d in deltas[:2]] == [0, 1] and all("id" in d for d in deltas[:2])
        order = [d["index"] for d in deltas[2:]]
        assert order == [0, 1, 0, 1, 0, 1]
        for i in (0, 1):
            assert "".join(d["function"]["arguments"] for d in deltas if d["index"] == i) == PAR_ARGS[i]
        # a step's single tool_call replaces the model level's list
        s.reset()
        for want in (["a", "b"], ["c"]):
            _, _, raw = await _post(f"{s.url}/chat/completions", {**body, "model": "stepped"})
            got = [c["function"]["name"] for c in orjson.loads(raw)["choices"][0]["message"]["tool_calls"]]
            assert got == want


async def test_parallel_tool_calls_anthropic_wire() -> None:
    import anthropic

    tools: Any = [{"name": n, "input_schema": {"type": "object"}} for n in ("get_weather", "get_time")]
    async with SimServer(PARALLEL) as s:
        client = anthropic.AsyncAnthropic(base_url=str(s.url).removesuffix("/v1"), api_key="x", max_retries=0)
        msg = await client.messages.create(
            model="par", max_tokens=50, messages=[{"role": "user", "content": "hi"}], tools=tools
        )
        assert msg.stop_reason == "tool_use"
        want = [("get_weather", {"city": "東京"}), ("get_time", {"tz": "Asia/Tokyo"})]
        assert [(b.name, b.input) for b in msg.content if b.type == "tool_use"] == want
        async with client.messages.stream(
            model="par", max_tokens=50, messages=[{"role": "user", "content": "hi"}], tools=tools
        ) as stream:
            events = [ev async for ev in stream]
            final = await stream.get_final_message()
        assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == want
        # blocks follow each other: start 0, deltas 0, stop 0, start 1, deltas 1, stop 1
        seq = [(e.type, getattr(e, "index", None)) for e in events if e.type.startswith("content_block")]
        assert seq[0] == ("content_block_start", 0) and seq[-1] == ("content_block_stop", 1)
        i = seq.index(("content_block_stop", 0))
        assert seq[i + 1] == ("content_block_start", 1)
        assert all(ix == 0 for _, ix in seq[:i]) and all(ix == 1 for _, ix in seq[i + 1 :])
        await client.close()


async def test_parallel_tool_calls_gemini_wire() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather"}, {"name": "get_time"}]}],
    }
    async with SimServer(PARALLEL) as s:
        base = str(s.url).removesuffix("/v1") + "/v1beta/models/par"
        _, _, raw = await _post(f"{base}:generateContent", body)
        parts = orjson.loads(raw)["candidates"][0]["content"]["parts"]
        assert parts == [
            {"functionCall": {"name": "get_weather", "args": {"city": "東京"}}},
            {"functionCall": {"name": "get_time", "args": {"tz": "Asia/Tokyo"}}},
        ]


async def test_split_bytes_writes_small_pieces_across_characters() -> None:
    async with SimServer(PARALLEL) as s:
        body = {"model": "split", "messages": MSGS, "stream": True}
        _, parts = await _post_to(f"{s.url}/chat/completions", body)
        assert len(parts) > 10 and any(_cuts_a_character(p) for p in parts)
        text = "".join(
            ch["delta"].get("content") or ""
            for p in _sse_payloads(b"".join(parts).decode())[:-1]
            for ch in orjson.loads(p)["choices"]
        )
        assert text == "東京 👨‍👩‍👧 مرحبا"
        # the Anthropic and Gemini wires split the same way
        a_body = {
            "model": "split",
            "max_tokens": 9,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
        _, parts = await _post_to(f"{s.url}/messages", a_body, {"anthropic-version": "2023-06-01"})
        assert len(parts) > 10 and any(_cuts_a_character(p) for p in parts)
        assert "👨\\u200d" not in b"".join(parts).decode()  # raw UTF-8, not escapes
        g_url = str(s.url).removesuffix("/v1") + "/v1beta/models/split:streamGenerateContent?alt=sse"
        _, parts = await _post_to(g_url, {"contents": [{"parts": [{"text": "x"}]}]})
        assert len(parts) > 10 and any(_cuts_a_character(p) for p in parts)


def _cuts_a_character(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
