"""Failover through the real gateway, driven by the official openai SDK, upstreams played by the sim."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({}) as handle:
        yield handle


def config(sim: SimHandle, routes: str, extra: str = "", timeout_ms: int = 400) -> str:
    t = f"{{first_byte_ms: {timeout_ms}, idle_ms: {timeout_ms}}}"
    return f"""
providers:
  p1: {{protocol: openai, base_url: "{sim.url}", timeouts: {t}}}
  p2: {{protocol: openai, base_url: "{sim.url}", timeouts: {t}}}
  p3: {{protocol: openai, base_url: "{sim.url}"}}
routes:
{routes}
retry: {{max_attempts: 3, backoff_base_ms: 10, backoff_max_ms: 50, max_wait_ms: 500}}
breaker: {{failure_threshold: 3, cooldown_s: 0.5}}
auth: {{mode: open}}
{extra}
"""


def two_deps(primary: str, fallback: str = "good", name: str = "chat") -> str:
    return f"""  {name}:
    deployments:
      - {{provider: p1, model: {primary}, price: {{input: 1.0, output: 2.0}}}}
      - {{provider: p2, model: {fallback}, price: {{input: 3.0, output: 4.0}}}}
"""


@pytest.fixture
def gw_factory(sim: SimHandle, tmp_path: Path) -> Iterator[Any]:
    stack: list[Any] = []

    def start(routes: str, scenario: dict[str, Any], extra: str = "") -> RunningGateway:
        sim.set_scenario({"models": scenario})
        sim.reset()
        cm = run_gateway(config(sim, routes, extra), storage_url=f"sqlite:///{tmp_path}/t.db")
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="sk-test", max_retries=0, timeout=20)


def count(sim: SimHandle, model: str) -> int:
    return int(sim.stats()["models"].get(model, {}).get("requests", 0))


def test_plain_answer_sync_and_headers(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(two_deps("good"), {"good": {"reply": "plain answer"}})
    raw = client(gw).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    comp = raw.parse()
    assert comp.choices[0].message.content == "plain answer"
    assert raw.headers["x-relaygate-deployment"] == "p1/good"
    assert raw.headers["x-relaygate-attempts"] == "1"
    assert comp.usage is not None and comp.usage.completion_tokens == 2
    # only the model name was rewritten on the way up
    assert sim.requests("good")[-1]["model"] == "good"


async def test_plain_answer_async_stream_and_not(gw_factory: Any) -> None:
    gw = gw_factory(two_deps("good"), {"good": {"reply": "async works fine"}})
    ac = openai.AsyncOpenAI(base_url=gw.base_url, api_key="sk", max_retries=0)
    comp = await ac.chat.completions.create(model="chat", messages=MSG)
    assert comp.choices[0].message.content == "async works fine"
    stream = await ac.chat.completions.create(model="chat", messages=MSG, stream=True)
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "async works fine"
    await ac.close()


def test_503_then_success_retries_same_deployment(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(two_deps("flaky"), {"flaky": {"steps": [{"status": 503}, {"status": 200}]}})
    raw = client(gw).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "p1/flaky"
    assert raw.headers["x-relaygate-attempts"] == "2"
    assert count(sim, "flaky") == 2 and count(sim, "good") == 0


@pytest.mark.parametrize("preset", ["region_block_451", "region_block_403"])
@pytest.mark.parametrize("stream", [False, True])
def test_region_block_fails_over_with_no_client_error(
    gw_factory: Any, sim: SimHandle, preset: str, stream: bool
) -> None:
    gw = gw_factory(
        two_deps("blocked"), {"blocked": {"error": {"preset": preset}}, "good": {"reply": "from fallback"}}
    )
    c = client(gw)
    if stream:
        with c.chat.completions.with_streaming_response.create(
            model="chat", messages=MSG, stream=True
        ) as resp:
            assert resp.headers["x-relaygate-deployment"] == "p2/good"
            text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
    else:
        text = c.chat.completions.create(model="chat", messages=MSG).choices[0].message.content or ""
    assert text == "from fallback"
    assert count(sim, "blocked") == 1  # a region block is not retried on the same deployment
    row = gw.ledger_rows(1)[0]
    assert [a.error_class for a in row.attempts] == ["region_blocked", None]
    assert row.served_deployment == "p2/good" and row.status == 200


def test_all_deployments_down_is_one_clean_error(gw_factory: Any) -> None:
    gw = gw_factory(
        two_deps("down1", "down2"),
        {"down1": {"error": {"status": 500}}, "down2": {"error": {"preset": "region_block_451"}}},
    )
    with pytest.raises(openai.APIStatusError) as exc:
        client(gw).chat.completions.create(model="chat", messages=MSG)
    assert exc.value.status_code in (502, 503)
    body = exc.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "p1/down1" in body["error"]["message"] and "p2/down2" in body["error"]["message"]


def test_upstream_400_passes_through_unchanged_without_failover(gw_factory: Any, sim: SimHandle) -> None:
    upstream_body = {
        "error": {
            "message": "Invalid 'foo': nope",
            "type": "invalid_request_error",
            "param": "foo",
            "code": "invalid_value",
        }
    }
    gw = gw_factory(
        two_deps("strict"),
        {
            "strict": {
                "error": {
                    "status": 400,
                    "message": "Invalid 'foo': nope",
                    "param": "foo",
                    "code": "invalid_value",
                }
            }
        },
    )
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw).chat.completions.create(model="chat", messages=MSG)
    assert exc.value.response.json() == upstream_body
    assert count(sim, "strict") == 1 and count(sim, "good") == 0


def test_breaker_opens_after_threshold_and_closes_after_cooldown(gw_factory: Any, sim: SimHandle) -> None:
    routes = two_deps("sick") + "    retry: {max_attempts: 1}\n"
    gw = gw_factory(routes, {"sick": {"error": {"status": 500}}})
    c = client(gw)
    for _ in range(3):  # threshold 3: each request fails over to p2 after one try on p1
        assert c.chat.completions.create(model="chat", messages=MSG).choices[0].message.content
    assert count(sim, "sick") == 3
    assert gw.gateway.runtime.router.breakers.get("p1/sick").state == "open"
    raw = c.chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-attempts"] == "1" and count(sim, "sick") == 3  # skipped while open
    sim.set_scenario({"models": {"sick": {"reply": "healthy again"}}})
    time.sleep(0.6)  # cooldown 0.5 s -> half-open probe
    assert c.chat.completions.create(model="chat", messages=MSG).choices[0].message.content == "healthy again"
    assert gw.gateway.runtime.router.breakers.get("p1/sick").state == "closed"


def test_retry_after_short_is_honoured_on_same_deployment(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(
        two_deps("limited"),
        {
            "limited": {
                "steps": [
                    {"error": {"preset": "rate_limit"}, "headers": {"Retry-After": "0.3"}},
                    {"status": 200},
                ]
            }
        },
    )
    t0 = time.monotonic()
    raw = client(gw).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "p1/limited"
    assert time.monotonic() - t0 >= 0.3
    assert count(sim, "limited") == 2


def test_retry_after_long_moves_on_and_cools_down(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(
        two_deps("limited"),
        {"limited": {"error": {"preset": "rate_limit"}, "headers": {"Retry-After": "30"}}},
    )
    c = client(gw)
    t0 = time.monotonic()
    raw = c.chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "p2/good"
    assert time.monotonic() - t0 < 2  # did not sit out the 30 s
    for _ in range(3):  # during the cooldown the limited deployment gets no request at all
        c.chat.completions.create(model="chat", messages=MSG)
    assert count(sim, "limited") == 1


def test_gateway_answers_429_with_retry_after_when_only_waits_remain(gw_factory: Any) -> None:
    routes = "  solo:\n    deployments:\n      - {provider: p1, model: limited}\n"
    gw = gw_factory(
        routes, {"limited": {"error": {"preset": "rate_limit"}, "headers": {"Retry-After": "20"}}}
    )
    with pytest.raises(openai.RateLimitError) as exc:
        client(gw).chat.completions.create(model="solo", messages=MSG)
    assert 1 <= int(exc.value.response.headers["retry-after"]) <= 20


def test_insufficient_quota_is_not_retried(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(two_deps("broke"), {"broke": {"error": {"preset": "insufficient_quota"}}})
    raw = client(gw).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "p2/good"
    assert count(sim, "broke") == 1


def test_context_length_skips_smaller_windows(gw_factory: Any, sim: SimHandle) -> None:
    routes = """  long:
    deployments:
      - {provider: p1, model: small, context_window: 8000}
      - {provider: p2, model: smaller, context_window: 4000}
      - {provider: p3, model: big, context_window: 128000}
"""
    gw = gw_factory(routes, {"small": {"error": {"preset": "context_length"}}, "big": {"reply": "long ok"}})
    raw = client(gw).chat.completions.with_raw_response.create(model="long", messages=MSG)
    assert raw.parse().choices[0].message.content == "long ok"
    assert raw.headers["x-relaygate-deployment"] == "p3/big"
    assert count(sim, "smaller") == 0


@pytest.mark.parametrize(
    "step",
    [
        {"hang": True},
        {"reset": True},
        {"malformed": True},
        {"error": {"preset": "content_policy"}},
        {"error": {"preset": "auth"}},
    ],
)
def test_moves_on_for_timeouts_resets_malformed_policy_auth(
    gw_factory: Any, sim: SimHandle, step: dict[str, Any]
) -> None:
    gw = gw_factory(two_deps("bad"), {"bad": step})
    raw = client(gw).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-relaygate-deployment"] == "p2/good"
    assert count(sim, "bad") == 1


def test_weighted_strategy_spreads_and_still_falls_back(gw_factory: Any, sim: SimHandle) -> None:
    routes = """  spread:
    strategy: weighted
    deployments:
      - {provider: p1, model: w1, weight: 3}
      - {provider: p2, model: w2, weight: 1}
"""
    gw = gw_factory(routes, {})
    c = client(gw)
    for _ in range(40):
        c.chat.completions.create(model="spread", messages=MSG)
    assert count(sim, "w1") > count(sim, "w2") > 0
    sim.set_scenario({"models": {"w1": {"error": {"status": 503}}}})
    sim.reset()
    for _ in range(5):
        raw = c.chat.completions.with_raw_response.create(model="spread", messages=MSG)
        assert raw.headers["x-relaygate-deployment"] == "p2/w2"
