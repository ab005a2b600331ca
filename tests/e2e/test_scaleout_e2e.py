"""Three replicas sharing PostgreSQL and Redis behave as one gateway for rate limits and budgets.

Requests are spread round-robin over the replicas by the real openai / anthropic SDKs; the
provider is the simulator. A per-key limit of N per minute admits exactly N over all three (not
3N); a tenant's daily budget is overspent by at most one in-flight request per replica; refusals
are 429s in each wire's shape, with its rate-limit headers, and each still gets its ledger row.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway
from tests.e2e.replicas import replicas, shared_redis_or_skip, state_config, wait_until
from tests.pg import pg_schema

KEY_A = "acme-" + secrets.token_hex(16)
KEY_B = "rich-" + secrets.token_hex(16)
KEY_C = "toks-" + secrets.token_hex(16)
MSG: Any = [{"role": "user", "content": "hello"}]
LIMIT = 30
PRICE_IN, PRICE_OUT = 10_000.0, 20_000.0  # USD per 1M tokens: a few cents a request
BUDGET = 1.0


@pytest.fixture
def three(e2e_sim: SimHandle, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RunningGateway]]:
    redis_url = shared_redis_or_skip()
    monkeypatch.setenv("RG_SCALE_KEY_A", KEY_A)
    monkeypatch.setenv("RG_SCALE_KEY_B", KEY_B)
    monkeypatch.setenv("RG_SCALE_KEY_C", KEY_C)
    price = f"{{input: {PRICE_IN}, output: {PRICE_OUT}}}"
    config = f"""
providers:
  up: {{protocol: openai, base_url: "{e2e_sim.url}"}}
routes:
  chat: {{deployments: [{{provider: up, model: m1, price: {price}}}]}}
tenants:
  acme: {{keys: [{{key_env: RG_SCALE_KEY_A}}], key_limits: {{requests_per_minute: {LIMIT}}}}}
  rich: {{keys: [{{key_env: RG_SCALE_KEY_B}}], budget: {{usd_per_day: {BUDGET}}}}}
  toks: {{keys: [{{key_env: RG_SCALE_KEY_C}}], limits: {{tokens_per_minute: 5}}}}
auth: {{mode: keys}}
{state_config(redis_url)}
"""
    with pg_schema() as url, replicas(config, 3, url) as gws:
        yield gws


def _usage_rows(gws: list[RunningGateway], tenant: str) -> list[Any]:
    for gw in gws:
        gw.flush_ledger()
    engine = sa.create_engine(gws[0].storage_url or "")
    try:
        with engine.connect() as conn:
            q = sa.text("SELECT status, error_code FROM usage WHERE tenant = :t")
            return list(conn.execute(q, {"t": tenant}))
    finally:
        engine.dispose()


def test_a_key_limit_of_n_admits_n_over_three_replicas(three: list[RunningGateway]) -> None:
    clients = [openai.OpenAI(base_url=gw.base_url, api_key=KEY_A, max_retries=0, timeout=30) for gw in three]
    ring = itertools.cycle(clients)
    picks = [next(ring) for _ in range(2 * LIMIT + 15)]

    def call(client: openai.OpenAI) -> Any:
        try:
            return client.chat.completions.create(model="chat", messages=MSG, max_tokens=8)
        except openai.RateLimitError as exc:
            return exc

    with ThreadPoolExecutor(9) as pool:
        results = list(pool.map(call, picks))
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) == LIMIT, f"admitted {len(ok)} of {len(results)} with a limit of {LIMIT}"
    assert len(refused) == len(results) - LIMIT
    err = refused[0]
    h = err.response.headers
    assert err.status_code == 429
    assert err.body["code"] == "rate_limit_exceeded" and err.body["type"] == "rate_limit_error"  # type: ignore[index]
    assert h["x-ratelimit-limit-requests"] == str(LIMIT)
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert 1 <= int(h["retry-after"]) <= 60

    # The same key on /v1/messages, through the anthropic SDK: Anthropic's shape and headers.
    with anthropic.Anthropic(base_url=three[2].url, api_key=KEY_A, max_retries=0, timeout=20) as ac:
        with pytest.raises(anthropic.RateLimitError) as info:
            ac.messages.create(model="chat", max_tokens=8, messages=MSG)
    ah = info.value.response.headers
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert ah["anthropic-ratelimit-requests-limit"] == str(LIMIT)
    assert ah["anthropic-ratelimit-requests-remaining"] == "0"
    assert datetime.fromisoformat(ah["anthropic-ratelimit-requests-reset"]).tzinfo is not None
    assert int(ah["retry-after"]) >= 1

    rows = _usage_rows(three, "acme")  # every refusal has its ledger row, on the shared database
    assert sorted(r.status for r in rows).count(429) == len(refused) + 1
    assert sum(1 for r in rows if r.status == 200) == LIMIT
    assert {r.error_code for r in rows if r.status == 429} == {"rate_limit_exceeded"}


def test_a_tenant_budget_is_not_overspent_beyond_one_request_per_replica(
    three: list[RunningGateway], e2e_http: httpx.Client
) -> None:
    clients = [openai.OpenAI(base_url=gw.base_url, api_key=KEY_B, max_retries=0, timeout=30) for gw in three]
    ring = itertools.cycle(clients)

    def call(client: openai.OpenAI) -> Any:
        try:
            return client.chat.completions.create(model="chat", messages=MSG, max_tokens=4)
        except openai.RateLimitError as exc:
            return exc

    with ThreadPoolExecutor(9) as pool:  # three in flight per replica
        results = list(pool.map(call, [next(ring) for _ in range(60)]))
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) + len(refused) == len(results)
    costs = [(r.usage.prompt_tokens * PRICE_IN + r.usage.completion_tokens * PRICE_OUT) / 1e6 for r in ok]
    spent = sum(costs)
    assert ok and refused, "the budget should both admit and refuse some of 60 requests"
    assert spent <= BUDGET + 3 * max(costs) + 1e-9, f"spent {spent:.4f} USD of a {BUDGET} USD budget"
    assert spent >= BUDGET * 0.5  # and it was actually used, not refused from the start
    err = refused[0]
    assert err.status_code == 429
    assert err.body["code"] == "budget_exceeded" and err.body["type"] == "insufficient_quota"  # type: ignore[index]
    assert err.response.headers["x-should-retry"] == "false"
    assert int(err.response.headers["retry-after"]) >= 1
    rows = _usage_rows(three, "rich")
    assert sum(1 for r in rows if r.error_code == "budget_exceeded") == len(refused)
    health = e2e_http.get(three[1].url + "/healthz").json()
    assert health["status"] == "ok" and health["shared_state"]["up"] is True


def test_a_streams_real_tokens_count_against_the_tenant_on_every_replica(three: list[RunningGateway]) -> None:
    first = openai.OpenAI(base_url=three[0].base_url, api_key=KEY_C, max_retries=0, timeout=30)
    stream = first.chat.completions.create(model="chat", messages=MSG, stream=True)
    text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    assert text == "hello there"
    # The stream's usage is charged when its response ends (just after the client's last byte).
    wait_until(lambda: not three[0].gateway.admission.pending, timeout=5)
    other = openai.OpenAI(base_url=three[2].base_url, api_key=KEY_C, max_retries=0, timeout=30)
    with pytest.raises(openai.RateLimitError) as info:
        other.chat.completions.create(model="chat", messages=MSG)
    h = info.value.response.headers
    assert h["x-ratelimit-limit-tokens"] == "5" and h["x-ratelimit-remaining-tokens"] == "0"
    assert "x-ratelimit-limit-requests" not in h  # no request limit configured for this tenant
