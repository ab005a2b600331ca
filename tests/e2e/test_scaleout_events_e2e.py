"""Replica events through Redis: a cutoff set on one replica is in force on the others within a
second, a breaker opened on one is open on the others, and a Redis crash mid-load fails no
request (health says ``degraded``) and is repaired when Redis returns.

The cutoff monitors poll the database only every 30 s here, so only the pub/sub notice can
deliver a cutoff in time: the test fails if publishing breaks.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import openai
import pytest

from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway
from tests.e2e.replicas import (
    health,
    own_redis,
    replicas,
    shared_redis_or_skip,
    state_config,
    wait_until,
)
from tests.pg import pg_schema

ADMIN_KEY = "admin-" + secrets.token_hex(16)
KEY = "evts-" + secrets.token_hex(16)
MSG: Any = [{"role": "user", "content": "hello"}]
FLAKY = "up/up503"


def _config(sim: SimHandle, state: str) -> str:
    return f"""
providers:
  up: {{protocol: openai, base_url: "{sim.url}"}}
  up2: {{protocol: openai, base_url: "{sim.url}"}}
routes:
  chat: {{deployments: [{{provider: up, model: m1}}, {{provider: up2, model: m2}}]}}
  flaky: {{deployments: [{{provider: up, model: up503}}, {{provider: up2, model: m2}}]}}
tenants:
  t: {{keys: [{{key_env: RG_EVT_KEY}}], key_limits: {{requests_per_minute: 100000}}}}
auth: {{mode: keys}}
retry: {{max_attempts: 2, backoff_base_ms: 1, backoff_max_ms: 5}}
breaker: {{failure_threshold: 2, cooldown_s: 30}}
cutoffs: {{poll_interval_s: 30, detect: false}}
{state}
"""


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_EVT_KEY", KEY)
    monkeypatch.setenv("RELAYGATE_ADMIN_KEY", ADMIN_KEY)


@pytest.fixture
def three(e2e_sim: SimHandle) -> Iterator[list[RunningGateway]]:
    cfg = _config(e2e_sim, state_config(shared_redis_or_skip()))
    with pg_schema() as url, replicas(cfg, 3, url) as gws:
        yield gws


def _client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0, timeout=30)


def _breaker(http: httpx.Client, gw: RunningGateway) -> str | None:
    state: str | None = health(http, gw)["circuit_breakers"].get(FLAKY)
    return state


def _breaker_is(http: httpx.Client, gw: RunningGateway, state: str) -> bool:
    return _breaker(http, gw) == state


def _status_is(http: httpx.Client, gw: RunningGateway, status: str) -> bool:
    return bool(health(http, gw)["status"] == status)


def _has_cutoff(http: httpx.Client, gw: RunningGateway, cut: str) -> bool:
    return cut in health(http, gw)["cutoffs"]


def test_a_cutoff_set_on_one_replica_stops_traffic_on_the_others_within_a_second(
    three: list[RunningGateway], e2e_http: httpx.Client, e2e_sim: SimHandle
) -> None:
    first = _client(three[1]).chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert first.headers["x-relaygate-provider"] == "up"
    resp = e2e_http.post(
        three[0].url + "/admin/cutoffs",
        json={"provider": "up", "reason": "sanctions drill"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert resp.status_code in (200, 201), resp.text
    t_set = time.monotonic()
    for gw in three[1:]:
        wait_until(partial(_has_cutoff, e2e_http, gw, "up:*"), timeout=1.0)
    assert time.monotonic() - t_set < 1.0
    e2e_sim.reset()
    for gw in three[1:]:
        raw = _client(gw).chat.completions.with_raw_response.create(model="chat", messages=MSG)
        assert raw.headers["x-relaygate-provider"] == "up2"
    assert e2e_sim.requests("m1") == []  # nothing reached the cut-off provider

    cleared = e2e_http.delete(
        three[2].url + "/admin/cutoffs/up/%2A", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert cleared.status_code in (200, 204), cleared.text
    wait_until(lambda: health(e2e_http, three[0])["cutoffs"] == [], timeout=1.0)


def test_a_breaker_opened_on_one_replica_is_open_on_the_others(
    three: list[RunningGateway], e2e_http: httpx.Client, e2e_sim: SimHandle
) -> None:
    raw = _client(three[0]).chat.completions.with_raw_response.create(model="flaky", messages=MSG)
    assert raw.headers["x-relaygate-provider"] == "up2"  # up503 failed twice: its breaker opened
    assert _breaker(e2e_http, three[0]) == "open"
    for gw in three[1:]:
        wait_until(partial(_breaker_is, e2e_http, gw, "open"), timeout=1.0)
    before = len(e2e_sim.requests("up503"))
    again = _client(three[2]).chat.completions.with_raw_response.create(model="flaky", messages=MSG)
    assert again.headers["x-relaygate-provider"] == "up2"
    assert len(e2e_sim.requests("up503")) == before  # skipped on replica 3 without trying it


def test_redis_killed_mid_load_fails_nothing_and_resynchronises(
    e2e_sim: SimHandle, e2e_http: httpx.Client
) -> None:
    with own_redis() as server, pg_schema() as url:
        cfg = _config(e2e_sim, state_config(server.url))
        with replicas(cfg, 3, url) as gws:
            for gw in gws:
                assert health(e2e_http, gw)["status"] == "ok"
            clients = [_client(gw) for gw in gws]
            failures: list[BaseException] = []
            served: list[int] = []  # list.append is atomic under the GIL
            stop = threading.Event()

            def load(client: openai.OpenAI) -> None:
                while not stop.is_set():
                    try:
                        client.chat.completions.create(model="chat", messages=MSG, max_tokens=4)
                        served.append(1)
                    except Exception as exc:  # any failure at all fails the test
                        failures.append(exc)

            with ThreadPoolExecutor(6) as pool:
                try:
                    for c in clients * 2:
                        pool.submit(load, c)
                    wait_until(lambda: len(served) > 20, timeout=10)
                    server.stop()  # Redis crashes mid-load
                    for gw in gws:
                        wait_until(partial(_status_is, e2e_http, gw, "degraded"), timeout=5)
                    body = health(e2e_http, gws[0])
                    assert body["shared_state"]["up"] is False and "redis" in body["shared_state"]["reason"]
                    metrics = e2e_http.get(gws[0].url + "/metrics").text
                    assert "relaygate_shared_state_up 0.0" in metrics
                    at_outage = len(served)
                    wait_until(lambda: len(served) > at_outage + 30, timeout=10)  # still serving

                    # A breaker opens on replica 1 while Redis is down: the others cannot hear it yet.
                    _client(gws[0]).chat.completions.create(model="flaky", messages=MSG)
                    assert _breaker(e2e_http, gws[0]) == "open"
                    assert _breaker(e2e_http, gws[1]) is None

                    server.start()  # Redis is back (empty: it crashed without persistence)
                    for gw in gws:
                        wait_until(partial(_status_is, e2e_http, gw, "ok"), timeout=10)
                    for gw in gws[1:]:
                        wait_until(partial(_breaker_is, e2e_http, gw, "open"), timeout=5)
                finally:
                    stop.set()  # always: the load threads must end for the pool to close
            assert failures == [], f"{len(failures)} requests failed, first: {failures[:1]}"
            # Up again (polled: on 2 busy cores one Redis call can pass op_timeout_ms, 100 ms,
            # and mark the state down until the next reconnect, 200 ms later at most).
            wait_until(
                lambda: "relaygate_shared_state_up 1.0" in e2e_http.get(gws[1].url + "/metrics").text,
                timeout=5,
            )
