"""Streaming through the gateway: failover before the first content byte, clean errors after."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway
from tests.e2e.test_failover import MSG, config, two_deps


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({}) as handle:
        yield handle


@pytest.fixture
def start(sim: SimHandle, tmp_path: Path) -> Iterator[Any]:
    stack: list[Any] = []

    def go(scenario: dict[str, Any], routes: str | None = None) -> RunningGateway:
        sim.set_scenario({"models": scenario})
        sim.reset()
        cm = run_gateway(config(sim, routes or two_deps("primary")), storage_url=f"sqlite:///{tmp_path}/s.db")
        stack.append(cm)
        return cm.__enter__()

    yield go
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def _client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="sk", max_retries=0, timeout=10)


def _last_row(gw: RunningGateway, expect: int = 1) -> Any:
    return gw.ledger_rows(expect)[0]


def test_stream_usage_only_when_asked(start: Any) -> None:
    gw = start({"primary": {"reply": "one two three"}})
    c = _client(gw)
    chunks = list(c.chat.completions.create(model="chat", messages=MSG, stream=True))
    assert all(ch.usage is None for ch in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "one two three"
    # the gateway still learned the usage (it asked upstream for it) and priced it
    row = _last_row(gw)
    assert row.completion_tokens == 3 and row.cost_usd is not None and row.cost_usd > 0
    assert row.complete and row.finish_reason == "stop" and row.ttft_ms is not None

    chunks = list(
        c.chat.completions.create(
            model="chat", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    assert _last_row(gw, 2).completion_tokens == 3
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_stream_ends_with_done_on_the_wire(start: Any) -> None:
    gw = start({"primary": {"reply": "a b"}})
    body = {"model": "chat", "messages": MSG, "stream": True}
    with httpx.stream("POST", gw.base_url + "/chat/completions", json=body) as r:
        raw = b"".join(r.iter_bytes())
        assert r.headers["content-type"].startswith("text/event-stream")
    assert raw.rstrip().endswith(b"data: [DONE]")
    assert raw.count(b"[DONE]") == 1


@pytest.mark.parametrize(
    "step",
    [{"status": 503}, {"cut_after_chunks": 0}, {"hang": True}, {"error": {"preset": "region_block_403"}}],
)
def test_stream_fails_over_before_first_content(start: Any, sim: SimHandle, step: dict[str, Any]) -> None:
    gw = start({"primary": {"steps": [step]}, "good": {"reply": "fallback stream"}})
    with _client(gw).chat.completions.with_streaming_response.create(
        model="chat", messages=MSG, stream=True
    ) as resp:
        assert resp.headers["x-relaygate-deployment"] == "p2/good"
        text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
    assert text == "fallback stream"
    assert _last_row(gw).complete


def test_stream_cut_midway_is_an_sdk_error_not_a_hang(start: Any) -> None:
    gw = start({"primary": {"reply": "w1 w2 w3 w4 w5 w6", "cut_after_chunks": 3}})
    got: list[str] = []
    with pytest.raises(openai.APIError) as exc:
        for ch in _client(gw).chat.completions.create(model="chat", messages=MSG, stream=True):
            if ch.choices:
                got.append(ch.choices[0].delta.content or "")
                assert ch.choices[0].finish_reason is None  # never a made-up "stop"
    assert "".join(got).strip().startswith("w1")
    assert "stream" in str(exc.value).lower()
    row = _last_row(gw)
    # the sim drops the connection: seen as a broken connection (or a cut stream)
    assert row.status == 200 and not row.complete and row.error_code in ("connection", "stream_cut")


def test_stream_idle_gap_timeout_after_content_ends_with_error_event(start: Any) -> None:
    gw = start({"primary": {"reply": "slow words here", "chunk_gap_ms": 1500}})
    with pytest.raises(openai.APIError):
        list(_client(gw).chat.completions.create(model="chat", messages=MSG, stream=True))
    row = _last_row(gw)
    assert not row.complete and row.error_code == "timeout"
    assert row.served_deployment == "p1/primary"


def test_client_disconnect_mid_stream_still_records_a_row(start: Any) -> None:
    gw = start({"primary": {"reply": " ".join(f"w{i}" for i in range(50)), "chunk_gap_ms": 20}})
    body = {"model": "chat", "messages": MSG, "stream": True}
    with httpx.stream("POST", gw.base_url + "/chat/completions", json=body) as r:
        for _ in r.iter_raw():
            break  # leave after the first bytes
    row = _last_row(gw)
    assert row.stream and not row.complete


def test_client_gone_before_the_first_content_is_not_a_complete_stream(start: Any) -> None:
    # The gateway holds a stream back until its first content (so it can still fail over); a
    # client that gives up meanwhile must not be recorded as having received the whole stream.
    only = "  chat:\n    deployments:\n      - {provider: p3, model: primary}\n"  # default timeouts
    gw = start({"primary": {"reply": "late words", "ttft_ms": 1500, "chunk_gap_ms": 0}}, only)
    body = {"model": "chat", "messages": MSG, "stream": True}
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream("POST", gw.base_url + "/chat/completions", json=body, timeout=0.5) as r,
    ):
        r.read()
    row = _last_row(gw)
    assert row.stream and not row.complete
    assert row.error_code == "client_disconnected"


def _first_token_routes(primary: str) -> str:
    return f"""  chat:
    deployments:
      - {{provider: p4, model: {primary}}}
      - {{provider: p2, model: good}}
"""


def _with_first_token_provider(sim: SimHandle, tmp_path: Path, scenario: dict[str, Any]) -> Any:
    sim.set_scenario({"models": scenario})
    sim.reset()
    timeouts = "{first_token_ms: 300, idle_ms: 3000}"
    p4 = f'  p4: {{protocol: openai, base_url: "{sim.url}", timeouts: {timeouts}}}\n'
    cfg = config(sim, _first_token_routes("primary")).replace("routes:\n", p4 + "routes:\n", 1)
    return run_gateway(cfg, storage_url=f"sqlite:///{tmp_path}/ft.db")


def test_stream_stalled_after_its_role_chunk_fails_over_at_first_token_ms(
    sim: SimHandle, tmp_path: Path
) -> None:
    # The role chunk comes at once (so first_byte_ms is met) and the first content 5 s later.
    scenario = {"primary": {"reply": "too late", "ttft_ms": 5000}, "good": {"reply": "fallback stream"}}
    with _with_first_token_provider(sim, tmp_path, scenario) as gw:
        t0 = time.monotonic()
        with _client(gw).chat.completions.with_streaming_response.create(
            model="chat", messages=MSG, stream=True
        ) as resp:
            assert resp.headers["x-relaygate-deployment"] == "p2/good"
            text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
        assert text == "fallback stream" and time.monotonic() - t0 < 3
        row = _last_row(gw)
        assert [(a.deployment, a.error_class) for a in row.attempts] == [
            ("p4/primary", "timeout"),
            ("p2/good", None),
        ]
        assert 250 <= row.attempts[0].latency_ms < 2000 and row.complete


def test_first_token_ms_counts_the_wait_for_response_headers(sim: SimHandle, tmp_path: Path) -> None:
    # No headers at all (first_byte_ms is the default 60 s): the first-token clock starts when
    # the request is sent, so the stall is failed over at 300 ms, not at 60 s.
    scenario = {"primary": {"hang": True}, "good": {"reply": "fallback stream"}}
    with _with_first_token_provider(sim, tmp_path, scenario) as gw:
        t0 = time.monotonic()
        chunks = list(_client(gw).chat.completions.create(model="chat", messages=MSG, stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "fallback stream"
        assert time.monotonic() - t0 < 3
        row = _last_row(gw)
        assert [(a.deployment, a.error_class) for a in row.attempts] == [
            ("p4/primary", "timeout"),
            ("p2/good", None),
        ]


def test_first_token_ms_does_not_limit_a_stream_once_content_flows(sim: SimHandle, tmp_path: Path) -> None:
    # Gaps of 400 ms between chunks after the first content: longer than first_token_ms (300 ms)
    # in total, but that limit ends at the first content; idle_ms (3 s) applies after it.
    scenario = {"primary": {"reply": "a b c d", "ttft_ms": 0, "chunk_gap_ms": 400}, "good": {"reply": "no"}}
    with _with_first_token_provider(sim, tmp_path, scenario) as gw:
        chunks = list(_client(gw).chat.completions.create(model="chat", messages=MSG, stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "a b c d"
        row = _last_row(gw)
        assert row.served_deployment == "p4/primary" and row.complete and len(row.attempts) == 1
