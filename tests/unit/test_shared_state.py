"""Shared state: the pure window/budget arithmetic, the breaker's remote-open transition, header
rendering, the limit table, and ``MemoryState`` / ``RedisState`` (the real Redis on loopback)
answering the same sequences the same way."""

from __future__ import annotations

import asyncio
import secrets
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
import redis

from relaygate.admission import Admission, estimate_usd
from relaygate.config import load_config_text
from relaygate.config.schema import BreakerConfig, DeploymentConfig
from relaygate.config.state_schema import StateConfig
from relaygate.errors import BudgetExceededError, ConfigError, RateLimitError
from relaygate.protocols.openai import parse_chat_request
from relaygate.protocols.ratelimit_headers import go_duration, ratelimit_headers
from relaygate.routing.breaker import BreakerState, CircuitBreaker
from relaygate.state.base import Ask, Budget, Limit, MemoryState, Settlement, SharedState, StateEvent, Verdict
from relaygate.state.limits import build_ask, limit_table
from relaygate.state.redis_state import RedisState
from relaygate.state.windows import Check, budget_periods, request_window, token_window

REDIS_URL = "redis://127.0.0.1:6379/0"

# --- pure windows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "limit", "now", "expect"),
    [
        ([], 3, 100.0, Check(True, 1, 60.0)),
        ([90.0], 3, 100.0, Check(True, 2, 50.0)),
        ([90.0, 95.0], 3, 100.0, Check(True, 3, 50.0)),
        ([90.0, 95.0, 99.0], 3, 100.0, Check(False, 3, 50.0)),
        ([90.0, 95.0, 99.0, 99.5], 3, 100.0, Check(False, 4, 55.0)),  # two must leave: 95 is the 2nd
        ([41.0], 1, 100.0, Check(False, 1, 1.0)),
    ],
)
def test_request_window(times: list[float], limit: int, now: float, expect: Check) -> None:
    assert request_window(times, limit, now) == expect


@pytest.mark.parametrize(
    ("buckets", "limit", "now", "expect"),
    [
        ({}, 100, 100.0, Check(True, 0, 0.0)),
        ({50: 40, 90: 30}, 100, 100.0, Check(True, 70, 10.0)),
        ({40: 500, 90: 30}, 100, 100.0, Check(True, 30, 50.0)),  # 40 is out of the window
        ({50: 80, 90: 30}, 100, 100.0, Check(False, 110, 10.0)),
        ({50: 80, 90: 30}, 20, 100.0, Check(False, 110, 50.0)),  # both must leave
    ],
)
def test_token_window(buckets: dict[int, int], limit: int, now: float, expect: Check) -> None:
    assert token_window(buckets, limit, now) == expect


def test_budget_periods_are_utc_day_and_month() -> None:
    now = 1_795_996_800.0 + 3600  # 2026-11-30T01:00:00Z
    (day, day_end), (month, month_end) = budget_periods(now)
    assert (day, month) == ("2026-11-30", "2026-11")
    assert day_end == 1_795_996_800.0 + 86_400
    assert month_end == 1_795_996_800.0 + 86_400  # the last day of November ends the month


# --- breaker ---------------------------------------------------------------------------------

_BR = BreakerConfig(failure_threshold=2, cooldown_s=30.0)


@pytest.mark.parametrize(
    ("state", "opened_at", "remaining", "changed", "retry_after"),
    [
        (BreakerState.CLOSED, 0.0, 10.0, True, 10.0),
        (BreakerState.HALF_OPEN, 0.0, 10.0, True, 10.0),
        (BreakerState.OPEN, 95.0, 10.0, False, 25.0),  # a longer local cooldown is kept
        (BreakerState.OPEN, 75.0, 10.0, True, 10.0),  # 5 s left here, 10 s there: extend
        (BreakerState.CLOSED, 0.0, 0.0, False, 0.0),  # already over
        (BreakerState.CLOSED, 0.0, 45.0, True, 45.0),  # longer than this replica's cooldown
    ],
)
def test_breaker_apply_remote_open(
    state: BreakerState, opened_at: float, remaining: float, changed: bool, retry_after: float
) -> None:
    br = CircuitBreaker(_BR, state=state, opened_at=opened_at, failures=1)
    assert br.apply_remote_open(100.0, remaining) is changed
    assert br.retry_after(100.0) == pytest.approx(retry_after)
    assert br.failures == 1
    if changed:
        assert br.state is BreakerState.OPEN
        assert not br.allow(100.0 + remaining - 0.01)
        assert br.allow(100.0 + remaining + 0.01)  # then half-open: one probe, as locally


# --- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.0, "0ms"), (1.0, "1s"), (1.5, "1.5s"), (360.0, "6m0s"), (61.25, "1m1.25s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def _ask() -> Ask:
    lims = (
        Limit("k:a:requests", "requests", 10, "key"),
        Limit("t:t:requests", "requests", 100, "tenant"),
        Limit("k:a:tokens", "tokens", 1000, "key"),
    )
    return Ask("r", "t", lims, (), 0.0)


def test_headers_report_the_tightest_limit_in_each_wire() -> None:
    verdict = Verdict(True, (Check(True, 10, 2.0), Check(True, 40, 30.0), Check(True, 250, 12.0)), ())
    oa = ratelimit_headers("openai", _ask(), verdict, 1_795_996_800.0)
    assert oa == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "750",
        "x-ratelimit-reset-tokens": "12s",
    }
    an = ratelimit_headers("anthropic", _ask(), verdict, 1_795_996_800.5)
    assert an["anthropic-ratelimit-requests-limit"] == "10"
    assert an["anthropic-ratelimit-requests-remaining"] == "0"
    assert an["anthropic-ratelimit-requests-reset"] == "2026-11-30T00:00:03Z"  # rounded up, RFC 3339
    assert an["anthropic-ratelimit-tokens-remaining"] == "750"


# --- limit table and estimate ----------------------------------------------------------------

_CFG = """
providers: {up: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  chat: {deployments: [{provider: up, model: m1, price: {input: 1.0, output: 2.0}},
                       {provider: up, model: m2, price: {input: 10.0, output: 20.0}}]}
tenants:
  free: {}
  acme:
    key_limits: {requests_per_minute: 5}
    limits: {requests_per_minute: 50, tokens_per_minute: 1000}
    budget: {usd_per_day: 2.0, usd_per_month: 20.0}
    keys:
      - {key_sha256: "%s", limits: {requests_per_minute: 1}}
""" % ("ab" * 32)


def test_limit_table_and_ask() -> None:
    cfg = load_config_text(_CFG, "t.yaml")
    table = limit_table(cfg, env={})
    assert set(table) == {"acme"}  # a tenant without limits costs one dict miss
    tl = table["acme"]
    ask = build_ask(tl, "acme", "key_db1", "req_1", 1_795_996_800.0, 0.5)
    assert [(lim.name, lim.limit) for lim in ask.limits] == [
        ("k:key_db1:requests", 5),
        ("t:acme:requests", 50),
        ("t:acme:tokens", 1000),
    ]
    assert [b.name for b in ask.budgets] == ["t:acme:usd:day:2026-11-30", "t:acme:usd:month:2026-11"]
    own = build_ask(tl, "acme", "cfg_abababab", "req_2", 1_795_996_800.0, 0.5)
    assert own.limits[0] == Limit("k:cfg_abababab:requests", "requests", 1, "key")
    assert build_ask(tl, "acme", None, "req_3", 0.0, 0.0).limits[0].scope == "tenant"  # open auth: no key


def test_estimate_uses_the_most_expensive_candidate() -> None:
    cfg = load_config_text(_CFG, "t.yaml")
    deps: list[DeploymentConfig] = cfg.routes["chat"].deployments
    req = parse_chat_request(b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":100}')
    prompt = len(req.body) // 3 + 1
    assert estimate_usd(deps, req, 1024) == pytest.approx((prompt * 10.0 + 100 * 20.0) / 1e6)
    no_max = parse_chat_request(b'{"model":"chat","messages":[{"role":"user","content":"hi"}]}')
    assert estimate_usd(deps[:1], no_max, 1024) == pytest.approx(((len(no_max.body) // 3 + 1) + 2048) / 1e6)


def test_no_limits_means_no_work_on_the_hot_path() -> None:
    cfg = load_config_text(_CFG, "t.yaml")
    adm = Admission(MemoryState())
    assert adm.limits_for(cfg, "free") is None and adm.limits_for(cfg, "nobody") is None
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(2000):
            adm.limits_for(cfg, "free")
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = [
        s for s in after.compare_to(before, "filename") if "admission" in str(s.traceback) and s.size_diff > 0
    ]
    assert grown == []


def test_state_config_is_strict() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        load_config_text("state: {backend: redis}", "t.yaml")
    with pytest.raises(ConfigError, match="redis_ur"):
        load_config_text("state: {backend: redis, redis_ur: 'redis://x'}", "t.yaml")
    with pytest.raises(ConfigError, match="redis://"):
        load_config_text("state: {backend: redis, redis_url: 'http://x'}", "t.yaml")
    cfg = load_config_text("state: {backend: redis, redis_url_env: RG_REDIS}", "t.yaml")
    assert cfg.state.op_timeout_ms == 100 and StateConfig().backend == "memory"


def test_event_json_round_trip_and_garbage() -> None:
    ev = StateEvent("breaker_open", "up/m1", 123.5, "r1")
    assert StateEvent.from_json(ev.to_json()) == ev
    for junk in (b"", b"[]", b'{"kind": "resync"}', b'{"kind": "breaker_open", "until": "x"}', b"\xff"):
        assert StateEvent.from_json(junk) is None


# --- MemoryState and RedisState: the same answers ---------------------------------------------


def _admit(ask: Ask, state: SharedState) -> Any:
    return state.admit(ask)


class FakeClock:
    def __init__(self, t: float = 1_795_996_800.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    if request.param == "memory":
        yield MemoryState()
        return
    _redis_or_skip()
    cfg = StateConfig(backend="redis", redis_url=REDIS_URL, key_prefix=f"t{secrets.token_hex(4)}:")
    st = RedisState(cfg, origin="unit")

    async def ignore(ev: StateEvent) -> None:
        return None

    await st.start(ignore)
    assert st.health().up
    yield st
    await st.close()


async def test_request_limit_admits_exactly_n_under_concurrency(state: SharedState) -> None:
    lim = (Limit("k:x:requests", "requests", 7, "key"),)
    verdicts = await asyncio.gather(*(state.admit(Ask(f"r{i}", "g", lim, (), 0.0)) for i in range(20)))
    assert sum(v.ok for v in verdicts) == 7
    refused = [v for v in verdicts if not v.ok]
    assert all(v.denied == lim[0] and 0 < v.retry_after_s <= 60 for v in refused)


async def test_all_or_nothing_and_budget_settlement(state: SharedState) -> None:
    key_lim = Limit("k:y:requests", "requests", 100, "key")
    tokens = Limit("t:g:tokens", "tokens", 50, "tenant")
    day = Budget("t:g:usd:day:x", 1.0, "day", 4_000_000_000.0)
    ask = Ask("a", "g", (key_lim, tokens), (day,), 0.6)
    first = await state.admit(ask)
    assert first.ok and first.spent_usd == pytest.approx((0.6,))
    await state.settle(Settlement("g", (tokens,), 60, (day,), 0.1 - 0.6))  # real cost 0.1, 60 tokens
    second = await state.admit(Ask("b", "g", (key_lim, tokens), (day,), 0.6))
    assert not second.ok and second.denied == tokens  # 60 >= 50 tokens in the window
    third = await state.admit(Ask("c", "g", (key_lim,), (day,), 0.6))
    assert third.ok and third.spent_usd == pytest.approx((0.7,))
    assert third.checks[0].used == 2  # "b" was refused, so it was recorded nowhere
    fourth = await state.admit(Ask("d", "g", (key_lim,), (day,), 0.6))
    assert fourth.ok  # 0.7 < 1.0: admitted, and may cross the line by its own cost
    fifth = await state.admit(Ask("e", "g", (key_lim,), (day,), 0.6))
    assert not fifth.ok and fifth.denied == day and fifth.retry_after_s > 0  # 1.3 >= 1.0


async def test_memory_window_slides_with_the_clock() -> None:
    clock = FakeClock()
    st = MemoryState(clock)
    lim = (Limit("k:z:requests", "requests", 2, "key"),)
    assert [(await st.admit(Ask(f"r{i}", "g", lim, (), 0.0))).ok for i in range(3)] == [True, True, False]
    clock.t += 60.0
    assert (await st.admit(Ask("r9", "g", lim, (), 0.0))).ok


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_redis_serves_on_local_state() -> None:
    cfg = StateConfig(
        backend="redis",
        redis_url=f"redis://127.0.0.1:{_dead_port()}/0",
        connect_timeout_ms=200,
        reconnect_max_ms=200,
    )
    st = RedisState(cfg, origin="unit")
    events: list[StateEvent] = []

    async def record(ev: StateEvent) -> None:
        events.append(ev)

    await st.start(record)
    try:
        health = st.health()
        assert not health.up and health.reason and "redis unreachable" in health.reason
        lim = (Limit("k:w:requests", "requests", 2, "key"),)
        got = [(await st.admit(Ask(f"r{i}", "g", lim, (), 0.0))).ok for i in range(3)]
        assert got == [True, True, False]  # enforced locally meanwhile
        await st.publish(StateEvent("breaker_open", "d", 1e10, "unit"))  # dropped, never raises
        assert events == []
    finally:
        await st.close()


async def test_redis_and_memory_agree_on_a_sequence() -> None:
    _redis_or_skip()
    cfg = StateConfig(backend="redis", redis_url=REDIS_URL, key_prefix=f"t{secrets.token_hex(4)}:")
    rs = RedisState(cfg, origin="unit")

    async def ignore(ev: StateEvent) -> None:
        return None

    await rs.start(ignore)
    ms = MemoryState()
    lims = (Limit("k:q:requests", "requests", 4, "key"), Limit("t:q:tokens", "tokens", 30, "tenant"))
    budget = (Budget("t:q:usd:day:x", 2.0, "day", 4_000_000_000.0),)
    try:
        steps: list[Callable[[SharedState], Any]] = []
        for i in range(6):
            steps.append(partial(_admit, Ask(f"r{i}", "q", lims, budget, 0.5)))
            steps.append(lambda s: s.settle(Settlement("q", lims[1:], 8, budget, -0.25)))
        for step in steps:
            a, b = await step(rs), await step(ms)
            if isinstance(a, Verdict):
                assert isinstance(b, Verdict)
                assert (a.ok, a.denied, [c.used for c in a.checks]) == (
                    b.ok,
                    b.denied,
                    [c.used for c in b.checks],
                )
                assert a.spent_usd == pytest.approx(b.spent_usd)
    finally:
        await rs.close()


async def test_admission_raises_wire_shaped_errors() -> None:
    cfg = load_config_text(_CFG, "t.yaml")
    adm = Admission(MemoryState())
    tl = adm.limits_for(cfg, "acme")
    assert tl is not None
    from relaygate.auth import Principal

    p = Principal("acme", None, "key_1", None)
    req = parse_chat_request(b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":10}')
    deps = cfg.routes["chat"].deployments
    headers = [await adm.admit(tl, p, req, deps, f"req_{i}", "openai") for i in range(5)]
    assert headers[-1]["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimitError) as info:
        await adm.admit(tl, p, req, deps, "req_x", "anthropic")
    assert info.value.status == 429 and info.value.code == "rate_limit_exceeded"
    assert info.value.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert int(info.value.headers["retry-after"]) >= 1
    rich = Admission(MemoryState())
    big = parse_chat_request(
        b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":150000}'
    )
    tl2 = rich.limits_for(cfg, "acme")
    assert tl2 is not None
    await rich.admit(tl2, p, big, deps, "req_b1", "openai")  # reserves ~3 USD: over the 2 USD day
    with pytest.raises(BudgetExceededError) as over:
        await rich.admit(tl2, Principal("acme", None, "key_2", None), big, deps, "req_b2", "openai")
    err = over.value
    assert (err.code, err.type, err.headers["x-should-retry"]) == (
        "budget_exceeded",
        "insufficient_quota",
        "false",
    )


# --- router: remote openings and cooldowns ----------------------------------------------------


def test_router_applies_remote_openings_and_cooldowns_without_echo() -> None:
    from relaygate.routing.router import Router

    cfg = load_config_text(_CFG, "t.yaml")
    told: list[tuple[str, str, float]] = []
    now = [100.0]
    router = Router(cfg, {}, clock=lambda: now[0], on_health=lambda *a: told.append(a))
    assert router.apply_remote("breaker_open", "up/m1", 12.0)
    assert router.breakers.get("up/m1").state is BreakerState.OPEN
    assert router.breakers.get("up/m1").retry_after(now[0]) == pytest.approx(12.0)
    assert not router.apply_remote("breaker_open", "up/m1", 5.0)  # shorter than what it has
    assert router.apply_remote("cooldown", "up/m2", 3.0) and router.cooldown_until["up/m2"] == 103.0
    assert not router.apply_remote("cooldown", "up/m2", 1.0)
    assert not router.apply_remote("bogus", "up/m2", 1.0)
    assert told == []  # applying what another replica said is never re-published
