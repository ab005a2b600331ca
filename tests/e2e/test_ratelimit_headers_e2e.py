"""Successful answers carry the rate-limit headers too, as OpenAI's and Anthropic's own APIs do on
every response: plain and streamed, on ``/v1/chat/completions`` and ``/v1/messages``, cache hits
included; a tenant without limits gets none. The real gateway with Redis shared state (its own key
prefix), the provider simulator, and the openai and anthropic SDKs.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import pytest

from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway, run_gateway
from tests.e2e.replicas import shared_redis_or_skip, state_config, wait_until

LIMITED = "lim-" + secrets.token_hex(16)
FREE = "free-" + secrets.token_hex(16)
RPM, TPM = 50, 100_000


@pytest.fixture
def gw(e2e_sim: SimHandle, e2e_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningGateway]:
    monkeypatch.setenv("RG_RL_LIMITED", LIMITED)
    monkeypatch.setenv("RG_RL_FREE", FREE)
    config = f"""
providers:
  up: {{protocol: openai, base_url: "{e2e_sim.url}"}}
routes:
  chat: {{deployments: [{{provider: up, model: m1}}]}}
  cached: {{deployments: [{{provider: up, model: m1}}], cache: {{enabled: true}}}}
auth: {{mode: keys}}
tenants:
  acme:
    keys: [{{key_env: RG_RL_LIMITED}}]
    limits: {{requests_per_minute: {RPM}, tokens_per_minute: {TPM}}}
  free: {{keys: [{{key_env: RG_RL_FREE}}]}}
{state_config(shared_redis_or_skip())}
"""
    with run_gateway(config, storage_url=e2e_db_url) as running:
        yield running


def _openai(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=20)


def _remaining(h: Any, name: str) -> int:
    return int(h[name])


MSG: Any = [{"role": "user", "content": "hi"}]


def test_openai_success_plain_streamed_and_cached_carry_openai_headers(gw: RunningGateway) -> None:
    msg: Any = [{"role": "user", "content": f"hello [{uuid.uuid4().hex[:8]}]"}]
    with _openai(gw, LIMITED) as client:
        plain = client.chat.completions.with_raw_response.create(model="chat", messages=msg)
        streamed = client.chat.completions.with_raw_response.create(model="chat", messages=msg, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        first = client.chat.completions.with_raw_response.create(model="cached", messages=msg, temperature=0)
        assert first.headers["x-relaygate-cache"] == "miss"

        def cached_hit() -> Any:
            raw = client.chat.completions.with_raw_response.create(
                model="cached", messages=msg, temperature=0
            )
            return raw if raw.headers["x-relaygate-cache"] == "hit" else None

        hit = wait_until(cached_hit, timeout=5, every=0.02)  # the miss is stored off the request path
    for raw in (plain, streamed, first, hit):
        assert raw.http_response.status_code == 200
        h = raw.headers
        assert h["x-ratelimit-limit-requests"] == str(RPM)
        assert h["x-ratelimit-limit-tokens"] == str(TPM)
        assert h["x-ratelimit-reset-requests"].endswith("s")
        assert 0 <= _remaining(h, "x-ratelimit-remaining-tokens") <= TPM
        assert not any(k.startswith("anthropic-ratelimit") for k in h)
    # Each admitted request counts, over the shared window: the remainder goes down by one.
    assert _remaining(plain.headers, "x-ratelimit-remaining-requests") == RPM - 1
    assert _remaining(streamed.headers, "x-ratelimit-remaining-requests") == RPM - 2
    assert _remaining(first.headers, "x-ratelimit-remaining-requests") == RPM - 3
    assert _remaining(hit.headers, "x-ratelimit-remaining-requests") <= RPM - 4


def test_anthropic_success_plain_and_streamed_carry_anthropic_headers(gw: RunningGateway) -> None:
    args: dict[str, Any] = {"model": "chat", "max_tokens": 16, "messages": MSG}
    with anthropic.Anthropic(base_url=gw.url, api_key=LIMITED, max_retries=0, timeout=20) as client:
        plain = client.messages.with_raw_response.create(**args)
        assert plain.parse().content
        with client.messages.stream(**args) as stream:
            assert "".join(stream.text_stream)
            sh = stream.response.headers
    now = datetime.now(UTC)
    for h, remaining in ((plain.headers, RPM - 1), (sh, RPM - 2)):
        assert h["anthropic-ratelimit-requests-limit"] == str(RPM)
        assert h["anthropic-ratelimit-requests-remaining"] == str(remaining)
        assert h["anthropic-ratelimit-tokens-limit"] == str(TPM)
        reset = datetime.fromisoformat(h["anthropic-ratelimit-requests-reset"])
        assert now - timedelta(seconds=2) <= reset <= now + timedelta(seconds=62)
        assert not any(k.startswith("x-ratelimit") for k in h)


def test_a_tenant_without_limits_gets_no_rate_limit_headers(gw: RunningGateway) -> None:
    msg: Any = [{"role": "user", "content": "hello"}]
    with _openai(gw, FREE) as client:
        plain = client.chat.completions.with_raw_response.create(model="chat", messages=msg)
        streamed = client.chat.completions.with_raw_response.create(model="chat", messages=msg, stream=True)
        list(streamed.parse())
    with anthropic.Anthropic(base_url=gw.url, api_key=FREE, max_retries=0, timeout=20) as ac:
        an = ac.messages.with_raw_response.create(
            model="chat", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    for h in (plain.headers, streamed.headers, an.headers):
        assert h["x-relaygate-deployment"]  # a served answer, just without limits
        assert not any("ratelimit" in k for k in h), dict(h)
