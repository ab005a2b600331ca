"""The official ``anthropic`` SDK against the real gateway, served by an OpenAI-protocol upstream.

``POST /v1/messages`` (sync, async, ``messages.stream``), ``/v1/messages/count_tokens``, the
Anthropic error shapes the SDK maps to its exception classes, a stream cut mid-way, and a
three-turn streaming tool conversation with parallel tool calls whose upstream requests are
checked turn by turn (``sim.requests()``). Upstreams are ``relaygate sim``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

REPLY = "Bonjour from the upstream, 東京 👋"
SYSTEM = "Be brief."
USER = "hello there gateway"
# The sim counts whitespace words, plus 3 per message (system included).
INPUT_TOKENS = 2 + 3 + 3 + 3
OUTPUT_TOKENS = len(REPLY.split())

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CONVERT_TOOL: dict[str, Any] = {
    "name": "to_fahrenheit",
    "description": "Celsius to Fahrenheit",
    "input_schema": {"type": "object", "properties": {"celsius": {"type": "number"}}},
}
FINAL_TEXT = "Tokyo 21°C (70°F), القاهرة 30°C (86°F) ☀️"
AGENT_STEPS: list[dict[str, Any]] = [
    {
        "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "東京"}},
            {"name": "get_weather", "arguments": {"city": "القاهرة"}},
        ]
    },
    {
        "tool_calls": [
            {"name": "to_fahrenheit", "arguments": {"celsius": 21}},
            {"name": "to_fahrenheit", "arguments": {"celsius": 30}},
        ]
    },
    {"reply": FINAL_TEXT},
]

SCENARIO: dict[str, Any] = {
    "models": {
        "m1": {"reply": REPLY},
        "up400": {"error": {"status": 400, "message": "upstream says no", "param": "messages"}},
        "down500": {"error": {"status": 500}},
        "down529": {"error": {"preset": "overloaded"}},
        "cut": {"reply": "one two three four five six", "cut_after_chunks": 2},
        # split_bytes: the Unicode tool arguments also cross the gateway's read boundaries
        "agent": {"steps": AGENT_STEPS, "split_bytes": 11},
        "par": {"tool_calls": AGENT_STEPS[0]["tool_calls"]},
    }
}


def config(sim: SimHandle, auth: str = "open", extra: str = "") -> str:
    return f"""
providers:
  oa: {{protocol: openai, base_url: "{sim.url}"}}
  an: {{protocol: anthropic, base_url: "{sim.url}", api_key_env: null}}
  ge: {{protocol: gemini, base_url: "{sim.url.removesuffix("/v1")}/v1beta"}}
routes:
  chat: {{deployments: [{{provider: oa, model: m1, price: {{input: 1.0, output: 2.0}}}}]}}
  bad: {{deployments: [{{provider: oa, model: up400}}]}}
  abad: {{deployments: [{{provider: an, model: up400}}]}}
  gbad: {{deployments: [{{provider: ge, model: up400}}]}}
  down: {{deployments: [{{provider: oa, model: down500}}, {{provider: an, model: down529}}]}}
  cut: {{deployments: [{{provider: oa, model: cut}}]}}
  acut: {{deployments: [{{provider: an, model: cut}}]}}
  gcut: {{deployments: [{{provider: ge, model: cut}}]}}
  agent: {{deployments: [{{provider: oa, model: agent}}]}}
  par_oa: {{deployments: [{{provider: oa, model: par}}]}}
  par_an: {{deployments: [{{provider: an, model: par}}]}}
  par_ge: {{deployments: [{{provider: ge, model: par}}]}}
retry: {{max_attempts: 2, backoff_base_ms: 1, backoff_max_ms: 5}}
auth: {{mode: {auth}}}
{extra}
"""


@pytest.fixture(scope="module")
def sim_module() -> Iterator[SimHandle]:
    with run_sim_in_thread(SCENARIO) as handle:
        yield handle


@pytest.fixture
def sim(sim_module: SimHandle) -> SimHandle:
    sim_module.set_scenario(SCENARIO)
    sim_module.reset()
    return sim_module


@pytest.fixture(scope="module")
def gw(sim_module: SimHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    db = tmp_path_factory.mktemp("anthropic_e2e") / "t.db"
    with run_gateway(config(sim_module), storage_url=f"sqlite:///{db}") as running:
        yield running


@pytest.fixture(scope="module")
def client(gw: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=20) as c:
        yield c


def row_for(gw: RunningGateway, request_id: str) -> Any:
    """The ledger row of one request (waits for it: a stream's row trails its last byte)."""
    deadline = time.monotonic() + 10
    while True:
        gw.flush_ledger()
        rows = [r for r in gw.gateway.ledger._sink.list_usage(1000) if r.request_id == request_id]
        if rows or time.monotonic() > deadline:
            assert rows, f"no ledger row for {request_id}"
            return rows[0]
        time.sleep(0.02)


def upstream_bodies(sim: SimHandle, model: str) -> list[dict[str, Any]]:
    return [r["body"] for r in sim.requests(model)]


# ------------------------------------------------------------------------------ plain messages


def test_sync_create_translates_both_ways(
    client: anthropic.Anthropic, sim: SimHandle, gw: RunningGateway
) -> None:
    raw = client.messages.with_raw_response.create(
        model="chat",
        max_tokens=300,
        system=SYSTEM,
        messages=[{"role": "user", "content": USER}],
        extra_body={"temperature": 0.5},  # this SDK version has no temperature parameter
        stop_sequences=["END"],
        metadata={"user_id": "u-42"},
    )
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.model == "chat"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].type == "text" and msg.content[0].text == REPLY
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert raw.headers["x-relaygate-deployment"] == "oa/m1"
    # what the OpenAI-protocol upstream received
    (body,) = upstream_bodies(sim, "m1")
    assert body["model"] == "m1"
    assert body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    assert body["max_tokens"] == 300 and body["temperature"] == 0.5
    assert body["stop"] == ["END"] and body["user"] == "u-42"
    assert not body.get("stream")
    row = row_for(gw, raw.headers["request-id"])
    assert row.endpoint == "/v1/messages" and row.status == 200 and row.served_deployment == "oa/m1"
    assert (row.prompt_tokens, row.completion_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert row.cost_usd == pytest.approx((INPUT_TOKENS * 1.0 + OUTPUT_TOKENS * 2.0) / 1e6)
    # the upstream's finish_reason "length" is Anthropic's "max_tokens"
    short = client.messages.create(model="chat", max_tokens=2, messages=[{"role": "user", "content": USER}])
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2
    assert short.content[0].type == "text" and short.content[0].text == " ".join(REPLY.split()[:2])


async def test_async_create_and_async_stream(gw: RunningGateway, sim: SimHandle) -> None:
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=20) as ac:
        msg = await ac.messages.create(
            model="chat", max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": USER}]
        )
        assert msg.content[0].type == "text" and msg.content[0].text == REPLY
        async with ac.messages.stream(
            model="chat", max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": USER}]
        ) as stream:
            pieces = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(pieces) == REPLY and len(pieces) == OUTPUT_TOKENS  # the sim's word chunks, not one blob
    assert final.content[0].type == "text" and final.content[0].text == REPLY
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert upstream_bodies(sim, "m1")[-1]["stream"] is True


def test_messages_stream_text_stream_final_message_and_event_sequence(
    client: anthropic.Anthropic, sim: SimHandle, gw: RunningGateway
) -> None:
    with client.messages.stream(
        model="chat", max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": USER}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    assert pieces == [w + " " for w in REPLY.split()[:-1]] + [REPLY.split()[-1]]
    assert final.content[0].type == "text" and final.content[0].text == REPLY
    assert final.stop_reason == "end_turn" and final.model == "chat"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    body = upstream_bodies(sim, "m1")[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    row = row_for(gw, request_id)
    assert row.stream and row.complete and row.finish_reason == "stop"
    assert (row.prompt_tokens, row.completion_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)

    # the raw event grammar (https://docs.anthropic.com/en/docs/build-with-claude/streaming)
    events = list(
        client.messages.create(
            model="chat", max_tokens=100, messages=[{"role": "user", "content": USER}], stream=True
        )
    )
    names = [e.type for e in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 1
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert len(deltas) == OUTPUT_TOKENS and all(d.delta.type == "text_delta" for d in deltas)
    start = names.index("content_block_start")
    assert all(
        n in ("content_block_delta", "ping") for n in names[start + 1 : names.index("content_block_stop")]
    )
    md = events[-2]
    assert md.type == "message_delta" and md.delta.stop_reason == "end_turn"
    assert md.usage.output_tokens == OUTPUT_TOKENS

    with client.messages.stream(
        model="chat", max_tokens=2, messages=[{"role": "user", "content": USER}]
    ) as s:
        short = s.get_final_message()
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2


def test_count_tokens(client: anthropic.Anthropic, sim: SimHandle) -> None:
    short = client.messages.count_tokens(model="chat", messages=[{"role": "user", "content": "hi"}])
    longer = client.messages.count_tokens(
        model="chat", messages=[{"role": "user", "content": "hi " * 50 + "東京 👨‍👩‍👧‍👦 مرحبا"}]
    )
    with_system = client.messages.count_tokens(
        model="chat", system="You are a careful assistant.", messages=[{"role": "user", "content": "hi"}]
    )
    with_tools = client.messages.count_tokens(
        model="chat", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    assert with_system.input_tokens > short.input_tokens
    assert with_tools.input_tokens > short.input_tokens
    assert sim.stats()["total"] == 0  # counted by the gateway, no upstream call
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])


# ------------------------------------------------------------------------------------- errors


def _anthropic_body(exc: anthropic.APIStatusError, type_: str | None = None) -> dict[str, Any]:
    body = exc.response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    if type_ is not None:
        assert body["error"]["type"] == type_, body
    return body


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_not_found(client: anthropic.Anthropic, sim: SimHandle, stream: bool) -> None:
    with pytest.raises(anthropic.NotFoundError) as exc:
        if stream:
            with client.messages.stream(
                model="no-such-route", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            ) as s:
                s.get_final_message()
        else:
            client.messages.create(
                model="no-such-route", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    body = _anthropic_body(exc.value, "not_found_error")
    assert "no-such-route" in body["error"]["message"]
    assert sim.stats()["total"] == 0


def test_bad_bodies_are_bad_request(client: anthropic.Anthropic, gw: RunningGateway, sim: SimHandle) -> None:
    bad_calls: list[dict[str, Any]] = [
        {"messages": []},  # at least one message
        {"messages": [{"role": "system", "content": "x"}]},  # role must be user/assistant
        {"messages": [{"role": "user", "content": "x"}], "extra_body": {"temperature": 1.5}},  # out of range
        {"messages": [{"role": "user", "content": "x"}], "extra_body": {"frobnicate": True}},  # unknown field
    ]
    for kwargs in bad_calls:
        with pytest.raises(anthropic.BadRequestError) as exc:
            client.messages.create(model="chat", max_tokens=10, **kwargs)
        _anthropic_body(exc.value, "invalid_request_error")
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "x", "content-type": "application/json"}
    with httpx.Client(timeout=10) as http:
        for content, hdrs in [
            (b"{not json", headers),
            (b"[1, 2]", headers),
            (
                orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "x"}]}),
                headers,
            ),  # no max_tokens
            (
                orjson.dumps(
                    {"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
                ),
                {k: v for k, v in headers.items() if k != "anthropic-version"},
            ),
        ]:
            resp = http.post(gw.url + "/v1/messages", content=content, headers=hdrs)
            assert resp.status_code == 400, resp.text
            assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "invalid_request_error"
    assert sim.stats()["total"] == 0


@pytest.mark.parametrize("route", ["bad", "abad", "gbad"])  # OpenAI, Anthropic, Gemini upstream
def test_upstream_400_is_relayed_as_bad_request_without_failover(
    client: anthropic.Anthropic, sim: SimHandle, route: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model=route, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    body = _anthropic_body(exc.value, "invalid_request_error")
    assert "upstream says no" in body["error"]["message"]
    assert sim.stats()["total"] == 1  # a client error is neither retried nor failed over


@pytest.mark.parametrize("stream", [False, True])
def test_all_deployments_down_is_an_anthropic_shaped_5xx(
    client: anthropic.Anthropic, sim: SimHandle, stream: bool
) -> None:
    with pytest.raises(anthropic.APIStatusError) as exc:
        if stream:
            with client.messages.stream(
                model="down", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            ) as s:
                s.get_final_message()
        else:
            client.messages.create(model="down", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert isinstance(exc.value, anthropic.InternalServerError)
    assert exc.value.status_code in (502, 503)
    body = _anthropic_body(exc.value)
    assert body["error"]["type"] in ("api_error", "overloaded_error")
    assert "oa/down500" in body["error"]["message"] and "an/down529" in body["error"]["message"]
    stats = sim.stats()["models"]
    assert stats["down500"]["requests"] == 2 and stats["down529"]["requests"] == 2  # retried, then moved on


@pytest.mark.parametrize("route", ["cut", "acut", "gcut"])
def test_stream_cut_mid_way_raises_without_fabricated_stop(
    client: anthropic.Anthropic, sim: SimHandle, gw: RunningGateway, route: str
) -> None:
    """The upstream (OpenAI, Anthropic or Gemini protocol) drops the connection after two content chunks,
    once the gateway has committed the stream: the SDK raises promptly, having seen the text so
    far and no message_delta / stop_reason."""
    seen: list[Any] = []
    t0 = time.monotonic()
    with pytest.raises(anthropic.APIError) as exc:
        with client.messages.create(
            model=route, max_tokens=50, messages=[{"role": "user", "content": "hi"}], stream=True
        ) as events:
            request_id = events.response.headers["request-id"]
            for ev in events:
                seen.append(ev)
    assert time.monotonic() - t0 < 10
    assert isinstance(exc.value, anthropic.APIStatusError)
    names = [e.type for e in seen]
    assert "message_delta" not in names and "message_stop" not in names
    text = "".join(
        e.delta.text for e in seen if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "one two "
    row = row_for(gw, request_id)
    assert row.status == 200 and not row.complete and row.finish_reason is None

    # the stream helper raises too, and never hands out a final message
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(
            model=route, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            s.get_final_message()


# ----------------------------------------------------------------------------------- API keys


@pytest.fixture
def keys_gw(sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningGateway]:
    monkeypatch.setenv("ACME_KEY", "acme-" + "k" * 30)
    tenants = "tenants:\n  acme: {region: EU, keys: [{key_env: ACME_KEY}], allowed_routes: [chat]}\n"
    with run_gateway(config(sim, auth="keys", extra=tenants), storage_url=f"sqlite:///{tmp_path}/k.db") as g:
        yield g


def test_keys_mode_x_api_key_is_the_virtual_key(keys_gw: RunningGateway, sim: SimHandle) -> None:
    msgs: Any = [{"role": "user", "content": "hi"}]
    good = anthropic.Anthropic(base_url=keys_gw.url, api_key="acme-" + "k" * 30, max_retries=0, timeout=20)
    raw = good.messages.with_raw_response.create(model="chat", max_tokens=10, messages=msgs)
    assert raw.parse().content[0].type == "text"
    row = row_for(keys_gw, raw.headers["request-id"])
    assert row.tenant == "acme" and row.key_id is not None
    assert good.messages.count_tokens(model="chat", messages=msgs).input_tokens > 0
    # Authorization: Bearer works as well (auth_token)
    bearer = anthropic.Anthropic(base_url=keys_gw.url, auth_token="acme-" + "k" * 30, max_retries=0)
    assert bearer.messages.create(model="chat", max_tokens=10, messages=msgs).stop_reason == "end_turn"
    # a key may only use its routes: 403 -> PermissionDeniedError
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        good.messages.create(model="agent", max_tokens=10, messages=msgs)
    _anthropic_body(denied.value, "permission_error")
    served = sim.stats()["total"]

    wrong = anthropic.Anthropic(base_url=keys_gw.url, api_key="sk-wrong-" + "x" * 30, max_retries=0)
    no_key = {"X-Api-Key": anthropic.omit, "Authorization": anthropic.omit}  # sends no credential at all
    missing = anthropic.Anthropic(
        base_url=keys_gw.url, api_key="unused", max_retries=0, default_headers=no_key
    )
    for c in (wrong, missing):
        with pytest.raises(anthropic.AuthenticationError) as exc:
            c.messages.create(model="chat", max_tokens=10, messages=msgs)
        _anthropic_body(exc.value, "authentication_error")
        with pytest.raises(anthropic.AuthenticationError):
            with c.messages.stream(model="chat", max_tokens=10, messages=msgs) as s:
                s.get_final_message()
        with pytest.raises(anthropic.AuthenticationError):
            c.messages.count_tokens(model="chat", messages=msgs)
    assert sim.stats()["total"] == served  # refused before any upstream call
    for c in (good, bearer, wrong, missing):
        c.close()


# ------------------------------------------------------------- three-turn streaming tool conversation


def _stream_turn(client: anthropic.Anthropic, messages: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
    with client.messages.stream(
        model="agent",
        max_tokens=400,
        system=SYSTEM,
        messages=messages,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL, CONVERT_TOOL],  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        return stream.get_final_message(), events


def _tool_uses(final: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"]


def _check_assistant_tool_calls(msg: dict[str, Any], calls: list[tuple[str, str, dict[str, Any]]]) -> None:
    assert msg["role"] == "assistant" and not msg.get("content")
    assert [(c["id"], c["type"], c["function"]["name"]) for c in msg["tool_calls"]] == [
        (cid, "function", name) for cid, name, _ in calls
    ]
    assert [orjson.loads(c["function"]["arguments"]) for c in msg["tool_calls"]] == [
        inp for _, _, inp in calls
    ]


def _tool_text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def test_three_turn_streaming_tool_conversation_with_parallel_calls(
    client: anthropic.Anthropic, sim: SimHandle
) -> None:
    """An Anthropic-SDK agent loop served by an OpenAI-protocol upstream whose parallel tool
    calls stream with interleaved argument deltas; the SDK's own accumulator builds each turn."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Tokyo and Cairo, in °F?"}]
    results = {"東京": "21°C sunny", "القاهرة": "30°C clear", 21: "69.8°F", 30: "86°F"}

    # turn 1: two parallel get_weather calls
    final1, events1 = _stream_turn(client, messages)
    calls1 = _tool_uses(final1)
    assert final1.stop_reason == "tool_use" and [b.type for b in final1.content] == ["tool_use", "tool_use"]
    assert [(name, inp) for _, name, inp in calls1] == [
        ("get_weather", {"city": "東京"}),
        ("get_weather", {"city": "القاهرة"}),
    ]
    assert all(cid.startswith("call_sim") for cid, _, _ in calls1) and len({c[0] for c in calls1}) == 2
    assert any(e.type == "input_json" for e in events1)  # the arguments streamed as input_json_delta
    body1 = upstream_bodies(sim, "agent")[0]
    assert body1["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": messages[0]["content"]},
    ]
    assert body1["tools"] == [
        {
            "type": "function",
            "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]},
        }
        for t in (WEATHER_TOOL, CONVERT_TOOL)
    ]
    assert body1["stream"] is True

    # turn 2: answer both with tool_result blocks (the SDK's own content blocks go back as-is)
    messages.append({"role": "assistant", "content": final1.content})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": cid, "content": results[inp["city"]]}
                for cid, _, inp in calls1
            ],
        }
    )
    final2, _ = _stream_turn(client, messages)
    calls2 = _tool_uses(final2)
    assert final2.stop_reason == "tool_use"
    assert [(name, inp) for _, name, inp in calls2] == [
        ("to_fahrenheit", {"celsius": 21}),
        ("to_fahrenheit", {"celsius": 30}),
    ]
    assert not {c[0] for c in calls2} & {c[0] for c in calls1}
    body2 = upstream_bodies(sim, "agent")[1]
    assert [m["role"] for m in body2["messages"]] == ["system", "user", "assistant", "tool", "tool"]
    _check_assistant_tool_calls(body2["messages"][2], calls1)
    assert [(m["tool_call_id"], _tool_text(m["content"])) for m in body2["messages"][3:]] == [
        (calls1[0][0], "21°C sunny"),
        (calls1[1][0], "30°C clear"),
    ]

    # turn 3: results as text blocks, plus a user remark after them; the answer is text
    messages.append({"role": "assistant", "content": final2.content})
    messages.append(
        {
            "role": "user",
            "content": [
                *(
                    {
                        "type": "tool_result",
                        "tool_use_id": cid,
                        "content": [{"type": "text", "text": results[inp["celsius"]]}],
                    }
                    for cid, _, inp in calls2
                ),
                {"type": "text", "text": "Thanks!"},
            ],
        }
    )
    final3, events3 = _stream_turn(client, messages)
    assert final3.stop_reason == "end_turn"
    assert [b.type for b in final3.content] == ["text"] and final3.content[0].text == FINAL_TEXT
    assert "".join(e.text for e in events3 if e.type == "text") == FINAL_TEXT
    body3 = upstream_bodies(sim, "agent")[2]
    roles = [m["role"] for m in body3["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant", "tool", "tool", "user"]
    assert body3["messages"][:5] == body2["messages"]  # history re-sent unchanged
    _check_assistant_tool_calls(body3["messages"][5], calls2)
    assert [(m["tool_call_id"], _tool_text(m["content"])) for m in body3["messages"][6:8]] == [
        (calls2[0][0], "69.8°F"),
        (calls2[1][0], "86°F"),
    ]
    assert _tool_text(body3["messages"][8]["content"]) == "Thanks!"
    assert sim.stats()["models"]["agent"]["requests"] == 3


@pytest.mark.parametrize("route", ["par_oa", "par_an", "par_ge"])
def test_parallel_tool_stream_follows_the_anthropic_event_grammar(
    client: anthropic.Anthropic, sim: SimHandle, route: str
) -> None:
    """Anthropic streams one content block at a time: every delta falls between its block's
    content_block_start and content_block_stop, and a stopped block gets no more deltas, so a
    client may run a tool as soon as its block stops. Served by an OpenAI-protocol upstream
    that interleaves the two calls' argument deltas (as an OpenAI-compatible upstream may), by
    an Anthropic one (blocks in turn) and a Gemini one (whole calls)."""
    events = list(
        client.messages.create(
            model=route,
            max_tokens=100,
            messages=[{"role": "user", "content": "Weather in Tokyo and Cairo?"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            stream=True,
        )
    )
    _check_grammar(events)
    tool_blocks = [e.content_block for e in events if e.type == "content_block_start"]
    assert [b.type for b in tool_blocks] == ["tool_use", "tool_use"]
    # the input a client sees at each block's stop is already complete
    with client.messages.stream(
        model=route,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Tokyo and Cairo?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        stops = [e.content_block for e in stream if e.type == "content_block_stop"]
    assert [b.input for b in stops] == [{"city": "東京"}, {"city": "القاهرة"}]


def _check_grammar(events: list[Any]) -> None:
    names = [e.type for e in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    open_block: int | None = None
    started: list[int] = []
    for e in events:
        if e.type == "content_block_start":
            assert open_block is None, f"block {e.index} started while {open_block} is open"
            assert e.index == len(started)
            open_block = e.index
            started.append(e.index)
        elif e.type == "content_block_delta":
            assert e.index == open_block, f"delta for block {e.index} while block {open_block} is open"
        elif e.type == "content_block_stop":
            assert e.index == open_block
            open_block = None
        elif e.type in ("message_delta", "message_stop"):
            assert open_block is None
