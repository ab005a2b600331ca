"""Cross-protocol end to end: the official SDKs against the real gateway, upstreams of another
protocol played by ``relaygate sim`` (which speaks OpenAI, Anthropic Messages and Gemini).

- the ``openai`` SDK served by an Anthropic-protocol and by a Gemini-protocol upstream (stream
  and not, usage, finish_reason), including a three-turn streaming tool conversation with
  parallel tool calls whose upstream requests are checked turn by turn;
- failover across protocols mid-route (Anthropic -> OpenAI for the anthropic SDK, Gemini ->
  Anthropic for the openai SDK) with the client's usage shape and the ledger row;
- Unicode (CJK, emoji with ZWJ sequences, RTL) through every client x upstream protocol pair,
  streamed and not, with the upstream writing its stream a few bytes at a time so multi-byte
  characters cross the gateway's read boundaries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import orjson
import pytest

from relaygate.protocols.sse import SSEDecoder
from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

SYSTEM = "Be brief."
USER = "hello there gateway"
REPLY = "Plain answer from a foreign protocol"
INPUT_TOKENS = 2 + 3 + 3 + 3  # the sim: words + 3 per message, system included
OUTPUT_TOKENS = len(REPLY.split())
ANTHROPIC_KEY, GEMINI_KEY = "sk-ant-upstream-test", "AIza-upstream-test"

# CJK (with an astral ideograph), emoji (ZWJ families, skin tone, flag, VS16 + ZWJ), RTL
# Arabic (with harakat) and Hebrew (with niqqud), and an RLM mark.
UNICODE_REPLY = "東京の天気は晴れ 𠮷野家 👨‍👩‍👧‍👦 👩🏽‍💻 🇯🇵 🏳️‍🌈 مَرْحَبًا بالعالم שָׁלוֹם עולם \u200f(RTL) ok ✅"
NOSPACE_REPLY = "東京都千代田区丸の内一丁目𠮷野家👨‍👩‍👧‍👦👩🏽‍💻🇯🇵مرحبابالعالمשלוםעולם。終わり"
UNICODE_USER = "翻訳して: 👨‍👩‍👧 مرحبا שלום 𠮷"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CONVERT = {
    "type": "function",
    "function": {
        "name": "to_fahrenheit",
        "description": "Celsius to Fahrenheit",
        "parameters": {"type": "object", "properties": {"celsius": {"type": "number"}}},
    },
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
GOOD_USAGE = {"prompt_tokens": 1234, "completion_tokens": 56}

SCENARIO: dict[str, Any] = {
    "models": {
        "m1": {"reply": REPLY},
        # split_bytes: the Unicode tool arguments also cross the gateway's read boundaries
        "agent": {"steps": AGENT_STEPS, "split_bytes": 11},
        "uni": {"reply": UNICODE_REPLY, "split_bytes": 13},
        "nospace": {"reply": NOSPACE_REPLY, "split_bytes": 7},
        "good": {"reply": "served by the fallback", "usage": GOOD_USAGE},
        "blocked403": {"error": {"preset": "region_block_403"}},
        "blocked451": {"error": {"preset": "region_block_451"}},
        "cut0": {"reply": "never seen", "cut_after_chunks": 0},
        "reset": {"reset": True},
        "cutmid": {"reply": "one two three four five six", "cut_after_chunks": 2},
    }
}
UPSTREAMS = ["oa", "an", "ge"]  # OpenAI, Anthropic, Gemini protocol providers


def config(sim: SimHandle) -> str:
    routes = "\n".join(
        f"  {u}_{m}: {{deployments: [{{provider: {u}, model: {m}}}]}}"
        for u in UPSTREAMS
        for m in ("m1", "agent", "uni", "nospace", "cutmid")
    )
    gemini_url = sim.url.removesuffix("/v1") + "/v1beta"
    return f"""
providers:
  oa: {{protocol: openai, base_url: "{sim.url}"}}
  an: {{protocol: anthropic, base_url: "{sim.url}", api_key_env: RG_E2E_ANTHROPIC_KEY}}
  ge: {{protocol: gemini, base_url: "{gemini_url}", api_key_env: RG_E2E_GEMINI_KEY}}
routes:
{routes}
  fo_an403: {{deployments: [{{provider: an, model: blocked403}}, {{provider: oa, model: good}}]}}
  fo_an451: {{deployments: [{{provider: an, model: blocked451}}, {{provider: oa, model: good}}]}}
  fo_ancut: {{deployments: [{{provider: an, model: cut0}}, {{provider: oa, model: good}}]}}
  fo_anreset: {{deployments: [{{provider: an, model: reset}}, {{provider: oa, model: good}}]}}
  fo_ge: {{deployments: [{{provider: ge, model: blocked403}}, {{provider: an, model: good}}]}}
retry: {{max_attempts: 2, backoff_base_ms: 1, backoff_max_ms: 5}}
auth: {{mode: open}}
# The sim scripts region blocks per model, not per provider: a detected block must not cut the
# whole provider off for the other tests of this module's shared gateway.
cutoffs: {{detect: false}}
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
    db = tmp_path_factory.mktemp("cross_e2e") / "t.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RG_E2E_ANTHROPIC_KEY", ANTHROPIC_KEY)
        mp.setenv("RG_E2E_GEMINI_KEY", GEMINI_KEY)
        with run_gateway(config(sim_module), storage_url=f"sqlite:///{db}") as running:
            yield running


@pytest.fixture(scope="module")
def oa(gw: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def an(gw: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=20) as c:
        yield c


def row_for(gw: RunningGateway, request_id: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        gw.flush_ledger()
        rows = [r for r in gw.gateway.ledger._sink.list_usage(1000) if r.request_id == request_id]
        if rows or time.monotonic() > deadline:
            assert rows, f"no ledger row for {request_id}"
            return rows[0]
        time.sleep(0.02)


def upstream(sim: SimHandle, model: str) -> list[dict[str, Any]]:
    return sim.requests(model)


MSGS: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]


# ------------------------------------------- openai SDK served by Anthropic / Gemini upstreams


def _check_upstream_request(entry: dict[str, Any], u: str, *, stream: bool, max_tokens: int | None) -> None:
    body, headers = entry["body"], entry["headers"]
    if u == "an":
        assert entry["path"] == "/v1/messages"
        assert headers["x-api-key"] == ANTHROPIC_KEY and headers["anthropic-version"] == "2023-06-01"
        assert body["model"] == "m1"
        assert body["system"] in (SYSTEM, [{"type": "text", "text": SYSTEM}])
        assert [(m["role"], _text(m["content"])) for m in body["messages"]] == [("user", USER)]
        assert body["max_tokens"] == (max_tokens or 4096)  # the provider's documented default
        assert bool(body.get("stream")) is stream
    else:
        action = "streamGenerateContent" if stream else "generateContent"
        assert entry["path"] == f"/v1beta/models/m1:{action}"
        assert headers["x-goog-api-key"] == GEMINI_KEY
        assert body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
        assert body["contents"] == [{"role": "user", "parts": [{"text": USER}]}]
        assert (body.get("generationConfig") or {}).get("maxOutputTokens") == max_tokens


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


@pytest.mark.parametrize("u", ["an", "ge"])
def test_openai_sdk_non_stream(oa: openai.OpenAI, sim: SimHandle, gw: RunningGateway, u: str) -> None:
    raw = oa.chat.completions.with_raw_response.create(model=f"{u}_m1", messages=MSGS)
    comp = raw.parse()
    assert comp.object == "chat.completion"
    choice = comp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == REPLY
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert comp.usage is not None
    assert (comp.usage.prompt_tokens, comp.usage.completion_tokens, comp.usage.total_tokens) == (
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        INPUT_TOKENS + OUTPUT_TOKENS,
    )
    assert raw.headers["x-relaygate-deployment"] == f"{u}/m1"
    _check_upstream_request(upstream(sim, "m1")[-1], u, stream=False, max_tokens=None)
    row = row_for(gw, raw.headers["x-request-id"])
    assert row.served_deployment == f"{u}/m1" and row.finish_reason == "stop"
    assert (row.prompt_tokens, row.completion_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)

    # max_tokens truncation -> finish_reason "length"
    short = oa.chat.completions.create(model=f"{u}_m1", messages=MSGS, max_tokens=2)
    assert short.choices[0].finish_reason == "length"
    assert short.choices[0].message.content == " ".join(REPLY.split()[:2])
    assert short.usage is not None and short.usage.completion_tokens == 2
    _check_upstream_request(upstream(sim, "m1")[-1], u, stream=False, max_tokens=2)


@pytest.mark.parametrize("u", ["an", "ge"])
def test_openai_sdk_stream(oa: openai.OpenAI, sim: SimHandle, gw: RunningGateway, u: str) -> None:
    with oa.chat.completions.with_streaming_response.create(
        model=f"{u}_m1", messages=MSGS, stream=True, stream_options={"include_usage": True}
    ) as resp:
        request_id = resp.headers["x-request-id"]
        chunks = list(resp.parse())
    with_choices = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == REPLY
    assert len([c for c in with_choices if c.choices[0].delta.content]) == OUTPUT_TOKENS  # incremental
    assert [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        INPUT_TOKENS,
        OUTPUT_TOKENS,
    )
    assert all(c.usage is None for c in chunks[:-1])
    _check_upstream_request(upstream(sim, "m1")[-1], u, stream=True, max_tokens=None)
    row = row_for(gw, request_id)
    assert row.stream and row.complete and row.served_deployment == f"{u}/m1"
    assert (row.prompt_tokens, row.completion_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)

    # without include_usage: no usage chunk for the client, but the ledger still gets the usage
    with oa.chat.completions.with_streaming_response.create(
        model=f"{u}_m1", messages=MSGS, stream=True, max_tokens=3
    ) as resp:
        request_id = resp.headers["x-request-id"]
        chunks = list(resp.parse())
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == " ".join(REPLY.split()[:3])
    assert chunks[-1].choices[0].finish_reason == "length"
    row = row_for(gw, request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (INPUT_TOKENS, 3)


async def test_openai_async_sdk_against_anthropic_and_gemini(gw: RunningGateway, sim: SimHandle) -> None:
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=20) as ac:
        for u in ("an", "ge"):
            comp = await ac.chat.completions.create(model=f"{u}_m1", messages=MSGS)
            assert comp.choices[0].message.content == REPLY
            stream = await ac.chat.completions.create(model=f"{u}_m1", messages=MSGS, stream=True)
            assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == REPLY


@pytest.mark.parametrize("u", ["an", "ge"])
def test_openai_sdk_stream_cut_mid_way_raises(
    oa: openai.OpenAI, sim: SimHandle, gw: RunningGateway, u: str
) -> None:
    """The Anthropic / Gemini upstream drops the connection after two words, once the stream is
    committed: the openai SDK raises promptly, with the text so far and no finish_reason."""
    seen: list[Any] = []
    t0 = time.monotonic()
    with pytest.raises(openai.APIError):
        with oa.chat.completions.with_streaming_response.create(
            model=f"{u}_cutmid", messages=MSGS, stream=True, stream_options={"include_usage": True}
        ) as resp:
            request_id = resp.headers["x-request-id"]
            for chunk in resp.parse():
                seen.append(chunk)
    assert time.monotonic() - t0 < 10
    assert "".join(c.choices[0].delta.content or "" for c in seen if c.choices) == "one two "
    assert not any(c.choices and c.choices[0].finish_reason for c in seen)
    assert not any(c.usage for c in seen)
    row = row_for(gw, request_id)
    assert not row.complete and row.finish_reason is None and row.served_deployment == f"{u}/cutmid"


# -------------------------------------- openai SDK tool conversation against Anthropic / Gemini


def _stream_turn(oa: openai.OpenAI, model: str, messages: list[Any]) -> Any:
    with oa.chat.completions.stream(
        model=model,
        messages=messages,
        tools=[WEATHER, CONVERT],  # type: ignore[list-item]
        stream_options={"include_usage": True},
    ) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def _calls(comp: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (c.id, c.function.name, orjson.loads(c.function.arguments))
        for c in comp.choices[0].message.tool_calls
    ]


def _upstream_turn(entry: dict[str, Any], u: str) -> list[tuple[str, Any]]:
    """The conversation an upstream received, normalised to (role, items): text, calls
    ``("call", id, name, input)`` and results ``("result", id-or-name, text)``."""
    out: list[tuple[str, Any]] = []
    body = entry["body"]
    if u == "an":
        for m in body["messages"]:
            content = m["content"]
            if isinstance(content, str):
                out.append((m["role"], [content]))
                continue
            items: list[Any] = []
            for b in content:
                if b["type"] == "text":
                    items.append(b["text"])
                elif b["type"] == "tool_use":
                    items.append(("call", b["id"], b["name"], b["input"]))
                elif b["type"] == "tool_result":
                    items.append(("result", b["tool_use_id"], _text(b["content"])))
            out.append((m["role"], items))
        return out
    for c in body["contents"]:
        items = []
        for p in c["parts"]:
            if "text" in p:
                items.append(p["text"])
            elif "functionCall" in p:
                items.append(("call", None, p["functionCall"]["name"], p["functionCall"]["args"]))
            elif "functionResponse" in p:
                fr = p["functionResponse"]
                items.append(("result", fr["name"], fr["response"]))
        out.append((c["role"], items))
    return out


@pytest.mark.parametrize("u", ["an", "ge"])
def test_openai_sdk_three_turn_tool_conversation(oa: openai.OpenAI, sim: SimHandle, u: str) -> None:
    model = f"{u}_agent"
    user = "Weather in Tokyo and Cairo, in °F?"
    messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    results = {"東京": "21°C sunny", "القاهرة": "30°C clear", 21: "69.8°F", 30: "86°F"}

    comp1 = _stream_turn(oa, model, messages)
    calls1 = _calls(comp1)
    assert comp1.choices[0].finish_reason == "tool_calls"
    assert [(n, i) for _, n, i in calls1] == [
        ("get_weather", {"city": "東京"}),
        ("get_weather", {"city": "القاهرة"}),
    ]
    assert len({cid for cid, _, _ in calls1}) == 2 and all(cid for cid, _, _ in calls1)
    assert comp1.usage is not None and comp1.usage.completion_tokens > 0
    first = upstream(sim, "agent")[0]
    if u == "an":
        assert first["body"]["tools"] == [
            {
                "name": t["function"]["name"],
                "description": t["function"]["description"],
                "input_schema": t["function"]["parameters"],
            }
            for t in (WEATHER, CONVERT)
        ]
        assert all(cid.startswith("toolu_") for cid, _, _ in calls1)  # Anthropic's ids, kept
    else:
        decls = first["body"]["tools"][0]["functionDeclarations"]
        assert [(d["name"], d["description"]) for d in decls] == [
            ("get_weather", "Current weather in a city"),
            ("to_fahrenheit", "Celsius to Fahrenheit"),
        ]
        # Gemini's Schema spells types as its Type enum (STRING); either spelling is accepted
        assert decls[0]["parameters"]["properties"]["city"]["type"].lower() == "string"
    assert _upstream_turn(first, u) == [("user", [user])]

    # turn 2: the SDK's own assistant message goes back as-is, then one tool message per call
    messages.append(comp1.choices[0].message)
    messages += [{"role": "tool", "tool_call_id": cid, "content": results[i["city"]]} for cid, _, i in calls1]
    comp2 = _stream_turn(oa, model, messages)
    calls2 = _calls(comp2)
    assert comp2.choices[0].finish_reason == "tool_calls"
    assert [(n, i) for _, n, i in calls2] == [
        ("to_fahrenheit", {"celsius": 21}),
        ("to_fahrenheit", {"celsius": 30}),
    ]
    second = upstream(sim, "agent")[1]
    assert _upstream_turn(second, u) == [("user", [user]), *_expected_tool_turns(u, calls1, results, "city")]

    # turn 3: results, then the final text answer
    messages.append(comp2.choices[0].message)
    messages += [
        {"role": "tool", "tool_call_id": cid, "content": results[i["celsius"]]} for cid, _, i in calls2
    ]
    comp3 = _stream_turn(oa, model, messages)
    assert comp3.choices[0].finish_reason == "stop" and not comp3.choices[0].message.tool_calls
    assert comp3.choices[0].message.content == FINAL_TEXT
    third = upstream(sim, "agent")[2]
    assert _upstream_turn(third, u) == [
        ("user", [user]),
        *_expected_tool_turns(u, calls1, results, "city"),
        *_expected_tool_turns(u, calls2, results, "celsius"),
    ]
    for entry in (first, second, third):
        if u == "an":
            assert entry["body"]["system"] in (SYSTEM, [{"type": "text", "text": SYSTEM}])
        else:
            assert entry["body"]["systemInstruction"]["parts"] == [{"text": SYSTEM}]


def _expected_tool_turns(
    u: str, calls: list[tuple[str, str, dict[str, Any]]], results: dict[Any, str], key: str
) -> list[tuple[str, Any]]:
    if u == "an":
        return [
            ("assistant", [("call", cid, name, inp) for cid, name, inp in calls]),
            ("user", [("result", cid, results[inp[key]]) for cid, _, inp in calls]),
        ]
    return [
        ("model", [("call", None, name, inp) for _, name, inp in calls]),
        ("user", [("result", name, {"output": results[inp[key]]}) for _, name, inp in calls]),
    ]


# ------------------------------------------------------------------ failover across protocols


@pytest.mark.parametrize(
    ("route", "failed_model", "first_class", "stream"),
    [
        ("fo_an403", "blocked403", "region_blocked", False),
        ("fo_an403", "blocked403", "region_blocked", True),
        ("fo_an451", "blocked451", "region_blocked", False),
        ("fo_an451", "blocked451", "region_blocked", True),
        ("fo_ancut", "cut0", None, True),  # the Anthropic stream is cut before any content
        ("fo_anreset", "reset", "connection", False),
        ("fo_anreset", "reset", "connection", True),
    ],
)
def test_anthropic_sdk_fails_over_from_anthropic_to_openai_protocol(
    an: anthropic.Anthropic,
    sim: SimHandle,
    gw: RunningGateway,
    route: str,
    failed_model: str,
    first_class: str | None,
    stream: bool,
) -> None:
    msgs: Any = [{"role": "user", "content": USER}]
    if stream:
        with an.messages.stream(model=route, max_tokens=100, system=SYSTEM, messages=msgs) as s:
            text = "".join(s.text_stream)
            msg = s.get_final_message()
            headers = s.response.headers
    else:
        raw = an.messages.with_raw_response.create(model=route, max_tokens=100, system=SYSTEM, messages=msgs)
        msg, headers = raw.parse(), raw.headers
        text = msg.content[0].text if msg.content[0].type == "text" else ""
    assert text == "served by the fallback" and msg.stop_reason == "end_turn"
    # Anthropic-shaped usage carrying the OpenAI upstream's own counts
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (1234, 56)
    assert headers["x-relaygate-deployment"] == "oa/good"
    failed = upstream(sim, failed_model)
    assert failed and failed[0]["path"] == "/v1/messages"  # the Anthropic deployment was tried first
    assert upstream(sim, "good")[0]["path"] == "/v1/chat/completions"
    row = row_for(gw, headers["request-id"])
    assert row.status == 200 and row.served_deployment == "oa/good" and row.served_provider == "oa"
    assert (row.prompt_tokens, row.completion_tokens) == (1234, 56)
    assert row.attempts[-1].deployment == "oa/good" and row.attempts[-1].error_class is None
    assert row.attempts[0].deployment.startswith("an/")
    if first_class is not None:
        assert row.attempts[0].error_class == first_class
    else:
        assert row.attempts[0].error_class in ("stream_cut", "connection")


def test_detected_cutoff_of_the_anthropic_provider_keeps_serving_the_anthropic_sdk(
    sim: SimHandle, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With cutoff detection on (the default), the region block also cuts provider ``an`` off:
    the next request skips it before routing and is served by the OpenAI-protocol deployment
    at once, still with Anthropic-shaped usage."""
    monkeypatch.setenv("RG_E2E_ANTHROPIC_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("RG_E2E_GEMINI_KEY", GEMINI_KEY)
    cfg = config(sim).replace("cutoffs: {detect: false}", "")
    with (
        run_gateway(cfg, storage_url=f"sqlite:///{tmp_path}/c.db") as g,
        anthropic.Anthropic(base_url=g.url, api_key="x", max_retries=0, timeout=20) as c,
    ):
        msgs: Any = [{"role": "user", "content": USER}]
        first = c.messages.with_raw_response.create(model="fo_an403", max_tokens=50, messages=msgs)
        assert first.headers["x-relaygate-deployment"] == "oa/good"
        row = row_for(g, first.headers["request-id"])
        assert [(a.deployment, a.error_class) for a in row.attempts] == [
            ("an/blocked403", "region_blocked"),
            ("oa/good", None),
        ]
        with c.messages.stream(model="fo_an403", max_tokens=50, messages=msgs) as s:
            msg = s.get_final_message()
            headers = s.response.headers
        assert msg.content[0].type == "text" and msg.content[0].text == "served by the fallback"
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (1234, 56)
        assert headers["x-relaygate-deployment"] == "oa/good" and headers["x-relaygate-attempts"] == "1"
        assert len(upstream(sim, "blocked403")) == 1  # not asked again
        row = row_for(g, headers["request-id"])
        assert [a.deployment for a in row.attempts] == ["oa/good"]
        assert row.policy is not None and [e["deployment"] for e in row.policy["excluded"]] == [
            "an/blocked403"
        ]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_fails_over_from_gemini_to_anthropic_protocol(
    oa: openai.OpenAI, sim: SimHandle, gw: RunningGateway, stream: bool
) -> None:
    if stream:
        with oa.chat.completions.with_streaming_response.create(
            model="fo_ge", messages=MSGS, stream=True, stream_options={"include_usage": True}
        ) as resp:
            headers = resp.headers
            chunks = list(resp.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        usage = chunks[-1].usage
    else:
        raw = oa.chat.completions.with_raw_response.create(model="fo_ge", messages=MSGS)
        comp, headers = raw.parse(), raw.headers
        text, finish, usage = comp.choices[0].message.content, [comp.choices[0].finish_reason], comp.usage
    assert text == "served by the fallback" and finish == ["stop"]
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        1234,
        56,
        1290,
    )
    assert headers["x-relaygate-deployment"] == "an/good"
    assert upstream(sim, "blocked403")[0]["path"].startswith("/v1beta/models/blocked403:")
    assert upstream(sim, "good")[0]["path"] == "/v1/messages"
    row = row_for(gw, headers["x-request-id"])
    assert row.served_deployment == "an/good" and (row.prompt_tokens, row.completion_tokens) == (1234, 56)
    assert [(a.deployment, a.error_class) for a in row.attempts] == [
        ("ge/blocked403", "region_blocked"),
        ("an/good", None),
    ]


# -------------------------------------------------------------------------------------- Unicode


@pytest.fixture
def fed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every byte chunk the gateway's SSE decoders are fed (the gateway runs in this process)."""
    seen: list[bytes] = []
    original = SSEDecoder.feed

    def feed(self: SSEDecoder, chunk: bytes) -> Any:
        seen.append(bytes(chunk))
        return original(self, chunk)

    monkeypatch.setattr(SSEDecoder, "feed", feed)
    return seen


def _splits_a_character(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _upstream_user_text(entry: dict[str, Any]) -> str:
    body = entry["body"]
    if "contents" in body:
        return "".join(p.get("text", "") for p in body["contents"][-1]["parts"])
    return _text(body["messages"][-1]["content"])


def _anthropic_roundtrip(an: anthropic.Anthropic, route: str, stream: bool) -> tuple[str, list[str]]:
    msgs: Any = [{"role": "user", "content": UNICODE_USER}]
    if not stream:
        msg = an.messages.create(model=route, max_tokens=200, messages=msgs)
        assert msg.stop_reason == "end_turn"
        return "".join(b.text for b in msg.content if b.type == "text"), []
    with an.messages.stream(model=route, max_tokens=200, messages=msgs) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert final.stop_reason == "end_turn"
    assert "".join(b.text for b in final.content if b.type == "text") == "".join(pieces)
    return "".join(pieces), pieces


def _openai_roundtrip(oa: openai.OpenAI, route: str, stream: bool) -> tuple[str, list[str]]:
    msgs: Any = [{"role": "user", "content": UNICODE_USER}]
    if not stream:
        comp = oa.chat.completions.create(model=route, messages=msgs)
        assert comp.choices[0].finish_reason == "stop"
        return comp.choices[0].message.content or "", []
    pieces = [
        c.choices[0].delta.content or ""
        for c in oa.chat.completions.create(model=route, messages=msgs, stream=True)
        if c.choices
    ]
    return "".join(pieces), [p for p in pieces if p]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("u", UPSTREAMS)
@pytest.mark.parametrize("client_kind", ["anthropic", "openai"])
@pytest.mark.parametrize("model", ["uni", "nospace"])
def test_unicode_survives_every_translation(
    an: anthropic.Anthropic,
    oa: openai.OpenAI,
    sim: SimHandle,
    fed: list[bytes],
    client_kind: str,
    u: str,
    stream: bool,
    model: str,
) -> None:
    route = f"{u}_{model}"
    want = UNICODE_REPLY if model == "uni" else NOSPACE_REPLY
    if client_kind == "anthropic":
        text, pieces = _anthropic_roundtrip(an, route, stream)
    else:
        text, pieces = _openai_roundtrip(oa, route, stream)
    assert text == want and "\ufffd" not in text
    # the request's Unicode reached the upstream intact, in its own protocol's shape
    assert _upstream_user_text(upstream(sim, model)[-1]) == UNICODE_USER
    if stream:
        # streamed in the sim's word chunks (one chunk when there are no spaces)
        assert pieces == (
            [w + " " for w in want.split()[:-1]] + [want.split()[-1]] if model == "uni" else [want]
        )
        # and the upstream bytes reached the gateway's decoder split inside multi-byte characters
        assert any(_splits_a_character(c) for c in fed), "no read boundary fell inside a character"
