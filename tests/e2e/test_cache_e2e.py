"""The response cache end to end: the real gateway, the openai and anthropic SDKs, the provider
simulator, the SQLite ledger, and (for the shared backend) the real Redis on 127.0.0.1:6379.

Each test asks its own question (``_q``) so entries of one test never answer another's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway, run_gateway

ACME_KEY, BETA_KEY, GAMMA_KEY = "sk-rg-acme-cache-0001", "sk-rg-beta-cache-0002", "sk-rg-gamma-cache-003"
REPLY = "hello there from the cache test"
SCENARIO: dict[str, Any] = {
    "models": {
        "m1": {"reply": REPLY},
        "cut": {"reply": "one two three four five six", "cut_after_chunks": 2},
    }
}


def _config(sim_url: str, cache_section: str = "") -> str:
    return f"""
providers:
  up: {{protocol: openai, base_url: "{sim_url}"}}
routes:
  cached: {{deployments: [{{provider: up, model: m1, price: {{input: 1.0, output: 2.0}}}}],
           cache: {{enabled: true}}}}
  shared: {{deployments: [{{provider: up, model: m1}}], cache: {{enabled: true, share_across_tenants: true}}}}
  hot:
    deployments: [{{provider: up, model: m1}}]
    cache: {{enabled: true, allow_nonzero_temperature: true}}
  short: {{deployments: [{{provider: up, model: m1}}], cache: {{enabled: true, ttl_s: 0.4}}}}
  sem:
    deployments: [{{provider: up, model: m1}}]
    cache: {{enabled: true, semantic: {{enabled: true, threshold: 0.9}}}}
  cutting: {{deployments: [{{provider: up, model: cut}}], cache: {{enabled: true}}}}
  plain: {{deployments: [{{provider: up, model: m1}}]}}
retry: {{max_attempts: 1}}
auth: {{mode: keys}}
tenants:
  acme: {{keys: [{{key_env: RG_CACHE_ACME}}]}}
  beta: {{keys: [{{key_env: RG_CACHE_BETA}}]}}
  gamma: {{keys: [{{key_env: RG_CACHE_GAMMA}}], allowed_routes: [plain]}}
{cache_section}
"""


@pytest.fixture(scope="module")
def keys_env() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("RG_CACHE_ACME", ACME_KEY)
    mp.setenv("RG_CACHE_BETA", BETA_KEY)
    mp.setenv("RG_CACHE_GAMMA", GAMMA_KEY)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def gw(
    e2e_sim_module: SimHandle, keys_env: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('cache')}/t.db"
    with run_gateway(_config(e2e_sim_module.url), storage_url=url) as running:
        yield running


@pytest.fixture
def sim(e2e_sim_module: SimHandle) -> SimHandle:
    e2e_sim_module.set_scenario(SCENARIO)
    e2e_sim_module.reset()
    return e2e_sim_module


@pytest.fixture
def oa(gw: RunningGateway, e2e_openai: Callable[..., openai.OpenAI]) -> Callable[[str], openai.OpenAI]:
    def make(key: str = ACME_KEY) -> openai.OpenAI:
        return e2e_openai(gw.base_url, api_key=key)  # type: ignore[no-any-return]

    return make


def _q(text: str = "What is the capital of France?") -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def _ask(client: openai.OpenAI, route: str, question: str, **kw: Any) -> tuple[Any, Any]:
    """(headers, parsed completion) of one non-streamed request at temperature 0 by default."""
    kw.setdefault("temperature", 0)
    raw = client.chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "user", "content": question}], **kw
    )
    return raw.headers, raw.parse()


def _stream(client: openai.OpenAI, route: str, question: str, **kw: Any) -> tuple[Any, str, list[Any]]:
    """(headers, text, chunks) of one streamed request at temperature 0."""
    raw = client.chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "user", "content": question}], temperature=0, stream=True, **kw
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return raw.headers, text, chunks


def _row(gw: RunningGateway, request_id: str, timeout: float = 10) -> Any:
    store = gw.gateway.ledger._sink
    deadline = time.monotonic() + timeout
    while True:
        gw.flush_ledger()
        rows = [r for r in store.list_usage(500) if r.request_id == request_id]
        if rows or time.monotonic() > deadline:
            assert rows, f"no ledger row for {request_id}"
            return rows[0]
        time.sleep(0.02)


def _until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _stored(gw: RunningGateway, n: int) -> Callable[[], bool]:
    """True once the memory backend holds at least ``n`` entries (stores are queued, not awaited)."""
    return lambda: len(gw.gateway.cache.backend) >= n


def test_repeated_deterministic_request_is_served_from_cache(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    h1, c1 = _ask(oa(), "cached", q)
    _until(_stored(gw, before + 1))
    h2, c2 = _ask(oa(), "cached", q)
    assert (h1["x-relaygate-cache"], h2["x-relaygate-cache"]) == ("miss", "hit")
    assert h2["x-relaygate-cache-match"] == "exact"
    assert len(sim.requests("m1")) == 1
    assert c2.choices[0].message.content == c1.choices[0].message.content == REPLY
    assert c2.id != c1.id and c2.usage is not None
    assert h2["x-relaygate-attempts"] == "0" and "x-relaygate-deployment" not in h2
    miss, hit = _row(gw, h1["x-request-id"]), _row(gw, h2["x-request-id"])
    assert (miss.cache, hit.cache) == ("miss", "hit")
    assert miss.cost_usd and miss.cost_usd > 0 and len(miss.attempts) == 1
    assert hit.cost_usd == 0.0 and hit.attempts == [] and hit.served_deployment is None
    assert hit.status == 200 and hit.finish_reason == "stop" and hit.latency_ms is not None


def test_parameters_that_change_the_answer_miss_and_user_does_not(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    _ask(oa(), "cached", q, max_tokens=50)
    _until(_stored(gw, before + 1))
    assert _ask(oa(), "cached", q, max_tokens=50, user="someone")[0]["x-relaygate-cache"] == "hit"
    assert _ask(oa(), "cached", q, max_tokens=51)[0]["x-relaygate-cache"] == "miss"
    assert _ask(oa(), "plain", q)[0].get("x-relaygate-cache") is None  # route without cache
    assert len(sim.requests("m1")) == 3


def test_tenant_never_receives_another_tenants_answer(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    _, acme = _ask(oa(ACME_KEY), "cached", q)
    _until(_stored(gw, before + 1))
    sim.set_scenario({"models": {"m1": {"reply": "beta's own answer"}}})
    h_beta, beta = _ask(oa(BETA_KEY), "cached", q)
    assert h_beta["x-relaygate-cache"] == "miss"
    assert beta.choices[0].message.content == "beta's own answer" != acme.choices[0].message.content
    _until(_stored(gw, before + 2))
    h_acme, again = _ask(oa(ACME_KEY), "cached", q)
    assert h_acme["x-relaygate-cache"] == "hit" and again.choices[0].message.content == REPLY


def test_shared_route_serves_every_tenant_but_never_one_policy_denies(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    _ask(oa(ACME_KEY), "shared", q)
    _until(_stored(gw, before + 1))
    h, c = _ask(oa(BETA_KEY), "shared", q)
    assert h["x-relaygate-cache"] == "hit" and c.choices[0].message.content == REPLY
    with pytest.raises(openai.PermissionDeniedError):  # gamma may use only `plain`
        _ask(oa(GAMMA_KEY), "shared", q)
    assert len(sim.requests("m1")) == 1


def test_streaming_a_cached_answer_yields_the_same_content(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    _, first = _ask(oa(), "cached", q)
    _until(_stored(gw, before + 1))
    h, text, chunks = _stream(oa(), "cached", q, stream_options={"include_usage": True})
    assert h["x-relaygate-cache"] == "hit" and text == first.choices[0].message.content == REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == first.usage.completion_tokens
    _, _, plain = _stream(oa(), "cached", q)  # without include_usage: no usage chunk
    assert all(c.choices for c in plain)
    assert len(sim.requests("m1")) == 1
    assert _row(gw, h["x-request-id"]).cache == "hit"


def test_a_streamed_miss_is_stored_only_when_it_completed(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    h1, text1, _ = _stream(oa(), "cached", q)
    assert h1["x-relaygate-cache"] == "miss"
    _until(_stored(gw, before + 1))
    h2, c2 = _ask(oa(), "cached", q)  # the assembled stream answers a plain request
    assert h2["x-relaygate-cache"] == "hit" and c2.choices[0].message.content == text1 == REPLY
    with pytest.raises(openai.APIError):
        _stream(oa(), "cutting", q)
    with pytest.raises(openai.APIError):
        _stream(oa(), "cutting", q)
    assert len(sim.requests("cut")) == 2  # the cut answer was never cached
    assert len(gw.gateway.cache.backend) == before + 1


def test_sampled_requests_are_skipped_unless_the_route_opts_in(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q = _q()
    for _ in range(2):
        h, _ = _ask(oa(), "cached", q, temperature=0.7)
        assert h["x-relaygate-cache"] == "skip" and h["x-relaygate-cache-match"] == "none; reason=temperature"
    assert _row(gw, h["x-request-id"]).cache == "skip"
    before = len(gw.gateway.cache.backend)
    _ask(oa(), "hot", q, temperature=0.7)
    _until(_stored(gw, before + 1))
    assert _ask(oa(), "hot", q, temperature=0.7)[0]["x-relaygate-cache"] == "hit"
    assert len(sim.requests("m1")) == 3


def test_entries_expire_after_their_ttl(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    t0 = time.monotonic()
    _ask(oa(), "short", q)
    _until(_stored(gw, before + 1))
    assert _ask(oa(), "short", q)[0]["x-relaygate-cache"] == "hit"
    while _ask(oa(), "short", q)[0]["x-relaygate-cache"] == "hit":  # polls; the 2nd miss re-stores
        assert time.monotonic() - t0 < 5
    assert time.monotonic() - t0 >= 0.4
    assert len(sim.requests("m1")) == 2


def test_anthropic_messages_hit_plain_and_streamed(gw: RunningGateway, sim: SimHandle) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    with anthropic.Anthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0, timeout=20) as client:
        args: dict[str, Any] = {
            "model": "cached",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": q}],
            "extra_body": {"temperature": 0},  # this SDK version no longer offers the argument
        }
        raw1 = client.messages.with_raw_response.create(**args)
        _until(_stored(gw, before + 1))
        raw2 = client.messages.with_raw_response.create(**args)
        first, second = raw1.parse(), raw2.parse()
        assert (raw1.headers["x-relaygate-cache"], raw2.headers["x-relaygate-cache"]) == ("miss", "hit")
        assert second.content[0].text == first.content[0].text == REPLY  # type: ignore[union-attr]
        assert second.id != first.id and second.stop_reason == "end_turn"
        with client.messages.stream(**args) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == REPLY and final.stop_reason == "end_turn"
        assert final.usage.output_tokens == first.usage.output_tokens
    assert len(sim.requests("m1")) == 1
    assert _row(gw, raw2.headers["x-request-id"]).cache == "hit"


def test_semantic_cache_hits_a_paraphrase_and_misses_another_question(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    tag = uuid.uuid4().hex[:6]
    before = len(gw.gateway.cache.backend)
    _ask(oa(), "sem", f"How do I reset my password? ({tag})")
    _until(_stored(gw, before + 1))
    h, c = _ask(oa(), "sem", f"How can I reset my password? ({tag})")
    assert h["x-relaygate-cache"] == "hit" and c.choices[0].message.content == REPLY
    match = h["x-relaygate-cache-match"]
    assert match.startswith("semantic; similarity=") and float(match.split("=")[1]) >= 0.9
    assert _row(gw, h["x-request-id"]).cache == "semantic_hit"
    assert _cache_counts(gw, "sem")["semantic_hit"] == 1
    h2, _ = _ask(oa(), "sem", f"What is the boiling point of water? ({tag})")
    assert h2["x-relaygate-cache"] == "miss"
    h3, _ = _ask(oa(BETA_KEY), "sem", f"How can I reset my password? ({tag})")  # other tenant
    assert h3["x-relaygate-cache"] == "miss"
    assert len(sim.requests("m1")) == 3
    assert gw.gateway.cache.stats()["embed_ms_avg"] > 0


def _cache_counts(gw: RunningGateway, route: str) -> dict[str, float]:
    """``relaygate_cache_requests_total`` of ``route`` by result, read from ``/metrics``."""
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "relaygate_cache_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["route"] == route:
                    out[sample.labels["result"]] = sample.value
    return out


def test_metrics_count_cache_results_per_route_and_healthz_names_the_backend(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    before = _cache_counts(gw, "cached")
    q, stored = _q(), len(gw.gateway.cache.backend)
    _ask(oa(), "cached", q)  # miss
    _until(_stored(gw, stored + 1))
    _ask(oa(), "cached", q)  # hit
    _stream(oa(), "cached", q)  # a streamed hit is counted when its stream ends
    _ask(oa(), "cached", q, temperature=0.7)  # skip
    _ask(oa(), "plain", q)  # a route without cache counts nothing

    def delta() -> dict[str, float]:
        after = _cache_counts(gw, "cached")
        return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}

    _until(lambda: delta() == {"miss": 1, "hit": 2, "skip": 1})
    assert _cache_counts(gw, "plain") == {}
    health = httpx.get(gw.url + "/healthz", timeout=10).json()
    assert health["cache"] == {"backend": "memory", "degraded": False, "reason": None}
    assert health["status"] == "ok"


def test_request_cache_control_no_cache_refreshes_and_no_store_bypasses(
    gw: RunningGateway, sim: SimHandle, oa: Callable[..., openai.OpenAI]
) -> None:
    q, before = _q(), len(gw.gateway.cache.backend)
    _ask(oa(), "cached", q)
    _until(_stored(gw, before + 1))
    # no-cache: the entry is not used (the upstream answers again) ...
    sim.set_scenario({"models": {"m1": {"reply": "a fresher answer"}}})
    h, c = _ask(oa(), "cached", q, extra_headers={"Cache-Control": "no-cache"})
    assert (h["x-relaygate-cache"], h["x-relaygate-cache-match"]) == ("skip", "none; reason=no-cache")
    assert c.choices[0].message.content == "a fresher answer"
    assert _row(gw, h["x-request-id"]).cache == "skip"
    # ... but the fresh answer is stored (a new question, so the store is observable), streamed too.
    q2 = _q()
    h, text, _ = _stream(oa(), "cached", q2, extra_headers={"cache-control": "max-age=0, No-Cache"})
    assert h["x-relaygate-cache"] == "skip" and text == "a fresher answer"
    _until(_stored(gw, before + 2))
    h, c = _ask(oa(), "cached", q2)
    assert h["x-relaygate-cache"] == "hit" and c.choices[0].message.content == "a fresher answer"
    assert len(sim.requests("m1")) == 3
    # no-store: neither looked up (the upstream answers) nor stored (the next request misses).
    q3, q4 = _q(), _q()
    h, _ = _ask(oa(), "cached", q3, extra_headers={"Cache-Control": "no-store"})
    assert (h["x-relaygate-cache"], h["x-relaygate-cache-match"]) == ("skip", "none; reason=no-store")
    h, _ = _ask(oa(), "cached", q, extra_headers={"Cache-Control": "no-cache, no-store"})
    assert h["x-relaygate-cache-match"] == "none; reason=no-store"
    _ask(oa(), "cached", q4)  # stored after any store the no-store requests could have queued
    _until(_stored(gw, before + 3))
    assert len(gw.gateway.cache.backend) == before + 3
    assert _ask(oa(), "cached", q3)[0]["x-relaygate-cache"] == "miss"
    assert len(sim.requests("m1")) == 7


REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_section(prefix: str, url: str = REDIS_URL) -> str:
    return f'cache: {{backend: redis, redis_url: "{url}", key_prefix: "{prefix}", redis_timeout_ms: 200}}'


def test_redis_backend_is_shared_by_two_replicas(
    e2e_sim_module: SimHandle, sim: SimHandle, keys_env: None, tmp_path: Any
) -> None:
    redis = pytest.importorskip("redis")
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    prefix = f"rgtest:{uuid.uuid4().hex}:"
    config = _config(sim.url, _redis_section(prefix))
    q = _q()
    try:
        with (
            run_gateway(config, storage_url=f"sqlite:///{tmp_path}/a.db") as one,
            run_gateway(config, storage_url=f"sqlite:///{tmp_path}/b.db") as two,
            openai.OpenAI(base_url=one.base_url, api_key=ACME_KEY, max_retries=0) as c1,
            openai.OpenAI(base_url=two.base_url, api_key=ACME_KEY, max_retries=0) as c2,
        ):
            h1, first = _ask(c1, "cached", q)
            _until(lambda: bool(probe.keys(prefix + "*")))
            (key,) = probe.keys(prefix + "*")
            assert key.decode().startswith(prefix + "rgc1:cached:acme:")
            assert 0 < probe.pttl(key) <= 3600 * 1000
            h2, second = _ask(c2, "cached", q)  # the other replica
            assert (h1["x-relaygate-cache"], h2["x-relaygate-cache"]) == ("miss", "hit")
            assert second.choices[0].message.content == first.choices[0].message.content
            assert _ask(c2, "cached", q, temperature=0.5)[0]["x-relaygate-cache"] == "skip"
            cache = httpx.get(two.url + "/healthz", timeout=10).json()["cache"]
            assert cache == {"backend": "redis", "degraded": False, "reason": None}
        assert len(sim.requests("m1")) == 2
    finally:
        for key in probe.keys(prefix + "*"):
            probe.delete(key)
        probe.close()


def test_unreachable_redis_is_a_miss_never_a_failed_request(
    sim: SimHandle, keys_env: None, tmp_path: Any
) -> None:
    config = _config(sim.url, _redis_section("rgtest:", "redis://127.0.0.1:9/0"))  # nothing listens
    q = _q()
    with (
        run_gateway(config, storage_url=f"sqlite:///{tmp_path}/t.db") as running,
        openai.OpenAI(base_url=running.base_url, api_key=ACME_KEY, max_retries=0) as client,
    ):
        for _ in range(2):
            h, c = _ask(client, "cached", q)
            assert h["x-relaygate-cache"] == "miss" and c.choices[0].message.content == REPLY
        _, text, _ = _stream(client, "cached", q)
        assert text == REPLY
        _until(lambda: running.gateway.cache.stats().get("errors", 0) >= 2)
        health = httpx.get(running.url + "/healthz", timeout=10).json()
        assert health["status"] == "degraded"  # still a 200: the replica serves, uncached
        assert health["cache"]["backend"] == "redis" and health["cache"]["degraded"] is True
        assert health["cache"]["reason"].startswith("redis ")
    assert len(sim.requests("m1")) == 3
