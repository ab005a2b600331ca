"""``/v1/messages`` served by an Anthropic upstream through the same-protocol pass-through.

The real gateway, the official ``anthropic`` SDK (and raw httpx where exact bytes matter), and
``relaygate sim`` as the upstream, which logs each request's raw body and answers ``thinking``
with a thinking block and ``cache_control`` blocks with ``cache_read_input_tokens``. Checks: the
upstream gets the client's bytes with only ``model`` changed; the client gets the upstream's
answer and events unchanged; the ledger row has tokens, cache reads and cost; failover from a
pass-through to a translated deployment, plain and streamed; the 400 naming ``thinking`` when no
Anthropic deployment can serve it; the cache skip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from relaygate.sim.anthropic_wire import SIGNATURE, THINKING
from tests.e2e.harness import RunningGateway, run_gateway

REPLY = "Bonjour from Claude, 東京 👋"
FALLBACK = "served by the fallback"
SCENARIO: dict[str, Any] = {
    "models": {
        "m1": {"reply": REPLY},
        "down500": {"error": {"status": 500}},
        "good": {"reply": FALLBACK},
        "cut": {"reply": "one two three four five six", "cut_after_chunks": 2},
        "stall": {"reply": "too late", "ttft_ms": 5000},  # message_start at once, content after 5 s
    }
}
API_KEY = "sk-ant-e2e-passthrough"
BETA = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
# The sim counts whitespace words (+3 per message); cache_control blocks are reported as read.
CACHED_SYSTEM = "You answer questions about the long shared handbook below in one line."
CACHED_WORDS = len(CACHED_SYSTEM.split())


def config(sim: SimHandle) -> str:
    return f"""
providers:
  an: {{protocol: anthropic, base_url: "{sim.url}", api_key_env: RG_PT_ANTHROPIC_KEY}}
  oa: {{protocol: openai, base_url: "{sim.url}"}}
  an_ft:
    protocol: anthropic
    base_url: "{sim.url}"
    api_key_env: RG_PT_ANTHROPIC_KEY
    timeouts: {{first_token_ms: 300}}
routes:
  native:
    deployments: [{{provider: an, model: m1, price: {{input: 3.0, output: 15.0, cached_input: 0.3}}}}]
  mixed: {{deployments: [{{provider: an, model: down500}}, {{provider: oa, model: good}}]}}
  oa_only: {{deployments: [{{provider: oa, model: good}}]}}
  cut: {{deployments: [{{provider: an, model: cut}}]}}
  stall: {{deployments: [{{provider: an_ft, model: stall}}, {{provider: oa, model: good}}]}}
  cached: {{deployments: [{{provider: an, model: m1}}], cache: {{enabled: true}}}}
retry: {{max_attempts: 1}}
auth: {{mode: open}}
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
    db = tmp_path_factory.mktemp("passthrough_e2e") / "t.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RG_PT_ANTHROPIC_KEY", API_KEY)
        with run_gateway(config(sim_module), storage_url=f"sqlite:///{db}") as running:
            yield running


@pytest.fixture(scope="module")
def client(gw: RunningGateway) -> Iterator[anthropic.Anthropic]:
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


# Hand-written bytes: odd spacing, key order, escapes and a nested "model" key must all survive.
RAW_BODY = (
    '{"max_tokens": 2048,  "model":"native", "system": [{"type": "text", "text": "'
    + CACHED_SYSTEM
    + '", "cache_control": {"type": "ephemeral", "ttl": "5m"}}],\n'
    ' "thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5,'
    ' "metadata": {"user_id": "u-42"}, "service_tier": "standard_only",'
    ' "messages": [{"role": "user", "content": [{"type": "text", "text": "caf\\u00e9 \\"hi\\"",'
    ' "cache_control": {"type": "ephemeral"}}]}],'
    ' "tools": [{"name": "pick", "input_schema": {"type": "object",'
    ' "properties": {"model": {"type": "string"}}}}]}'
)
HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": BETA, "x-api-key": "client-key"}


def test_body_reaches_anthropic_upstream_byte_identical_except_model(
    gw: RunningGateway, sim: SimHandle
) -> None:
    r = httpx.post(f"{gw.url}/v1/messages", content=RAW_BODY.encode(), headers=HEADERS, timeout=20)
    assert r.status_code == 200, r.text
    (seen,) = sim.requests("m1")
    assert seen["path"] == "/v1/messages"
    assert seen["raw"] == RAW_BODY.replace('"model":"native"', '"model":"m1"')
    assert seen["headers"]["anthropic-beta"] == BETA  # the client's beta opt-ins, forwarded
    assert seen["headers"]["x-api-key"] == API_KEY  # the provider's credentials, not the client's
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    # The upstream's answer as it sent it: its own model name, thinking block, cache usage.
    msg = r.json()
    assert msg["model"] == "m1"
    assert msg["content"][0] == {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE}
    assert msg["content"][1] == {"type": "text", "text": REPLY}
    assert msg["usage"]["cache_read_input_tokens"] == CACHED_WORDS + 2  # both marked blocks
    assert r.headers["x-relaygate-deployment"] == "an/m1"
    row = row_for(gw, r.headers["request-id"])
    total_in = msg["usage"]["input_tokens"] + msg["usage"]["cache_read_input_tokens"]
    assert (row.prompt_tokens, row.completion_tokens) == (total_in, msg["usage"]["output_tokens"])
    assert row.cached_tokens == CACHED_WORDS + 2 and row.finish_reason == "stop"
    expected = (
        msg["usage"]["input_tokens"] * 3.0 + row.cached_tokens * 0.3 + row.completion_tokens * 15.0
    ) / 1e6
    assert row.cost_usd == pytest.approx(expected)


def test_sdk_thinking_and_cache_usage_plain(
    client: anthropic.Anthropic, gw: RunningGateway, sim: SimHandle
) -> None:
    raw = client.messages.with_raw_response.create(
        model="native",
        max_tokens=2048,
        system=[{"type": "text", "text": CACHED_SYSTEM, "cache_control": {"type": "ephemeral"}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "hello"}],
    )
    msg = raw.parse()
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].signature == SIGNATURE  # type: ignore[union-attr]
    assert msg.usage.cache_read_input_tokens == CACHED_WORDS
    sent = sim.requests("m1")[0]["body"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    row = row_for(gw, raw.headers["request-id"])
    assert row.cached_tokens == CACHED_WORDS and row.cost_usd and row.cost_usd > 0


def _normalise(sse: bytes) -> bytes:
    return re.sub(rb'"msg_sim[0-9a-f]+"', b'"msg_X"', sse)


def test_stream_relays_every_upstream_event_unchanged(gw: RunningGateway, sim: SimHandle) -> None:
    body = orjson.loads(RAW_BODY)
    body["stream"] = True
    with httpx.stream("POST", f"{gw.url}/v1/messages", json=body, headers=HEADERS, timeout=20) as r:
        assert r.status_code == 200 and r.headers["x-relaygate-deployment"] == "an/m1"
        via_gateway = r.read()
        rid = r.headers["request-id"]
    direct = httpx.post(f"{sim.url}/messages", json={**body, "model": "m1"}, headers=HEADERS, timeout=20)
    assert _normalise(via_gateway) == _normalise(direct.content)  # every event, byte for byte
    assert b'"thinking_delta"' in via_gateway and b'"signature_delta"' in via_gateway
    row = row_for(gw, rid)
    assert row.stream and row.complete and row.status == 200 and row.finish_reason == "stop"
    assert row.cached_tokens == CACHED_WORDS + 2 and row.completion_tokens == len(REPLY.split())
    assert row.cost_usd and row.cost_usd > 0 and row.ttft_ms is not None


def test_sdk_stream_with_thinking(client: anthropic.Anthropic, sim: SimHandle) -> None:
    with client.messages.stream(
        model="native",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "hello"}],
    ) as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds and "text" in kinds
    assert final.content[0].thinking == THINKING  # type: ignore[union-attr]
    assert final.content[1].text == REPLY  # type: ignore[union-attr]
    assert final.usage.output_tokens == len(REPLY.split())


@pytest.mark.parametrize("stream", [False, True])
def test_failover_from_passthrough_to_translated_deployment(
    client: anthropic.Anthropic, gw: RunningGateway, sim: SimHandle, stream: bool
) -> None:
    args: dict[str, Any] = {
        "model": "mixed",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    if stream:
        with client.messages.stream(**args) as s:
            text = "".join(s.text_stream)
            headers = s.response.headers
    else:
        raw = client.messages.with_raw_response.create(**args)
        text, headers = raw.parse().content[0].text, raw.headers  # type: ignore[union-attr]
    assert text == FALLBACK and headers["x-relaygate-deployment"] == "oa/good"
    assert sim.requests("down500")[0]["path"] == "/v1/messages"
    assert "cache_control" in sim.requests("down500")[0]["raw"]  # the pass-through was tried first
    assert sim.requests("good")[0]["path"] == "/v1/chat/completions"
    row = row_for(gw, headers["request-id"])
    assert [(a.deployment, a.error_class) for a in row.attempts] == [
        ("an/down500", "server_error"),
        ("oa/good", None),
    ]
    assert row.served_deployment == "oa/good" and row.prompt_tokens and row.completion_tokens


def test_passthrough_stream_stalled_before_content_fails_over_at_first_token_ms(
    client: anthropic.Anthropic, gw: RunningGateway
) -> None:
    # The upstream answers message_start at once and its first content 5 s later; the stream is
    # held back until content, so first_token_ms (300 ms) still fails it over, unseen.
    t0 = time.monotonic()
    with client.messages.stream(
        model="stall", max_tokens=100, messages=[{"role": "user", "content": "hello"}]
    ) as s:
        text = "".join(s.text_stream)
        headers = s.response.headers
    assert text == FALLBACK and headers["x-relaygate-deployment"] == "oa/good"
    assert time.monotonic() - t0 < 3
    row = row_for(gw, headers["request-id"])
    assert [(a.deployment, a.error_class) for a in row.attempts] == [
        ("an_ft/stall", "timeout"),
        ("oa/good", None),
    ]
    assert 250 <= row.attempts[0].latency_ms < 2000 and row.complete


def test_thinking_on_openai_only_route_is_a_400_naming_thinking(
    client: anthropic.Anthropic, sim: SimHandle
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="oa_only",
            max_tokens=2048,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": "hello"}],
        )
    assert "thinking" in str(info.value.message)
    assert sim.stats()["total"] == 0


def test_thinking_never_silently_dropped_when_anthropic_fails(
    client: anthropic.Anthropic, sim: SimHandle
) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="mixed",
            max_tokens=2048,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": "hello"}],
        )
    assert info.value.status_code >= 500
    assert len(sim.requests("down500")) == 1 and sim.requests("good") == []


def test_passthrough_stream_cut_after_content_ends_with_error_event(
    client: anthropic.Anthropic, gw: RunningGateway, sim: SimHandle
) -> None:
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="cut", max_tokens=100, messages=[{"role": "user", "content": "hello"}]
        ) as s,
    ):
        for _ in s.text_stream:
            pass
    rows = [r for r in gw.ledger_rows(1) if r.route == "cut"]
    assert rows and rows[0].complete is False and rows[0].error_code in ("stream_cut", "connection")


def test_route_cache_is_skipped_for_passthrough(client: anthropic.Anthropic, sim: SimHandle) -> None:
    args: dict[str, Any] = {
        "model": "cached",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    for _ in range(2):
        raw = client.messages.with_raw_response.create(**args, extra_body={"temperature": 0})
        assert raw.headers["x-relaygate-cache"] == "skip"
        assert raw.headers["x-relaygate-cache-match"] == "none; reason=anthropic_passthrough"
    assert len(sim.requests("m1")) == 2
