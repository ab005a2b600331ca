"""Budgets survive restarts: the ledger's spend seeds the day and month counters at start-up and
whenever a counter is absent (a new period, Redis restarted or flushed), set-if-absent, one ledger
query per event and none per request. Real SQLite / PostgreSQL ledgers and a redis-server of the
test's own (so it can be flushed and restarted)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from relaygate.admission import Admission
from relaygate.auth import Principal
from relaygate.config import Config, load_config_text
from relaygate.config.state_schema import StateConfig
from relaygate.errors import BudgetExceededError
from relaygate.ledger.migrate import open_database
from relaygate.ledger.records import UsageRecord
from relaygate.ledger.usage_store import UsageStore
from relaygate.protocols.openai import parse_chat_request
from relaygate.state.base import MemoryState, Settlement, SharedState, StateEvent
from relaygate.state.limits import budgets_for, limit_table
from relaygate.state.redis_state import RedisState
from tests.e2e.replicas import OwnRedis, own_redis

CFG = """
providers: {up: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  chat: {deployments: [{provider: up, model: m1, price: {input: 1.0, output: 2.0}}]}
tenants:
  free: {}
  acme: {budget: {usd_per_day: 1.0, usd_per_month: 10.0}}
  beta: {budget: {usd_per_day: 1.0}}
"""
REQ = parse_chat_request(b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":10}')


def _row(i: int, tenant: str, ts: datetime, cost: float | None) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{i}", ts=ts, endpoint="/v1/chat/completions", status=200, tenant=tenant, cost_usd=cost
    )


class CountingLedger:
    """``UsageStore.budget_spend`` that counts its calls (the hot path must make none)."""

    def __init__(self, store: UsageStore) -> None:
        self.store = store
        self.calls: list[tuple[str, ...]] = []

    def budget_spend(
        self, tenants: Sequence[str], day_start: datetime, month_start: datetime
    ) -> dict[str, tuple[float, float]]:
        self.calls.append(tuple(tenants))
        return self.store.budget_spend(tenants, day_start, month_start)


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    """A SQLite ledger where acme already spent 1.5 USD today (over its 1 USD day budget)."""
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = UsageStore(engine)
    store.insert_usage([_row(1, "acme", datetime.now(UTC), 1.0), _row(2, "acme", datetime.now(UTC), 0.5)])
    yield CountingLedger(store)
    engine.dispose()


async def _admitted(adm: Admission, cfg: Config, tenant: str, rid: str) -> bool:
    tl = adm.limits_for(cfg, tenant)
    assert tl is not None
    deps = cfg.routes["chat"].deployments
    try:
        await adm.admit(tl, Principal(tenant, None, None, None), REQ, deps, rid, "openai")
    except BudgetExceededError:
        return False
    return True


# --- the ledger query ---------------------------------------------------------------------------


def test_budget_spend_sums_each_tenants_day_and_month(engine: sa.Engine) -> None:
    store = UsageStore(engine)
    month, day = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 15, tzinfo=UTC)
    store.insert_usage(
        [
            _row(1, "acme", datetime(2026, 3, 15, 10, tzinfo=UTC), 0.1),
            _row(2, "acme", datetime(2026, 3, 15, 0, 0, tzinfo=UTC), 0.05),  # the first instant counts
            _row(3, "acme", datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC), 0.2),  # this month, not today
            _row(4, "acme", datetime(2026, 2, 28, 23, 59, tzinfo=UTC), 5.0),  # last month
            _row(5, "acme", datetime(2026, 3, 15, 11, tzinfo=UTC), None),  # unpriced: 0
            _row(6, "beta", datetime(2026, 3, 15, 9, tzinfo=UTC), 0.3),
            _row(7, "gamma", datetime(2026, 3, 15, 9, tzinfo=UTC), 1.0),  # not asked for
        ]
    )
    got = store.budget_spend(["acme", "beta", "none"], day, month)
    assert set(got) == {"acme", "beta"}
    assert got["acme"] == pytest.approx((0.15, 0.35))
    assert got["beta"] == pytest.approx((0.3, 0.3))
    assert store.budget_spend([], day, month) == {}


# --- memory backend: a restart keeps the spend ---------------------------------------------------


async def test_a_restarted_memory_gateway_starts_from_the_ledgers_spend(ledger: CountingLedger) -> None:
    cfg = load_config_text(CFG, "t.yaml")
    adm = Admission(MemoryState(), spend=ledger)  # a fresh process: empty counters
    await adm.seed_all(cfg)
    assert ledger.calls == [("acme", "beta")]  # one query for every budgeted tenant
    assert not await _admitted(adm, cfg, "acme", "a1")  # 1.5 USD of 1.0 spent before the restart
    assert all([await _admitted(adm, cfg, "beta", f"b{i}") for i in range(20)])
    assert adm.limits_for(cfg, "free") is None  # no budget, no limits: nothing to do at all
    assert len(ledger.calls) == 1  # no ledger query per request


async def test_a_tenant_budgeted_by_a_reload_is_seeded_on_its_first_request(ledger: CountingLedger) -> None:
    adm = Admission(MemoryState(), spend=ledger)
    before = CFG.replace("acme: {budget: {usd_per_day: 1.0, usd_per_month: 10.0}}", "acme: {}")
    await adm.seed_all(load_config_text(before, "t.yaml"))  # acme has no budget yet
    cfg = load_config_text(CFG, "t.yaml")  # acme gets its budget now
    results = await asyncio.gather(*(_admitted(adm, cfg, "acme", f"a{i}") for i in range(10)))
    assert results == [False] * 10
    assert ledger.calls == [("beta",), ("acme",)]  # one seed, shared by the ten requests


# --- Redis: set-if-absent, re-seeded when Redis loses a counter ----------------------------------


def _state_cfg(server: OwnRedis, prefix: str) -> StateConfig:
    return StateConfig(
        backend="redis",
        redis_url=server.url,
        key_prefix=prefix,
        op_timeout_ms=200,
        connect_timeout_ms=300,
        reconnect_min_ms=20,
        reconnect_max_ms=100,
    )


async def _started(server: OwnRedis, prefix: str) -> RedisState:
    async def ignore(ev: StateEvent) -> None:
        return None

    st = RedisState(_state_cfg(server, prefix), origin=secrets.token_hex(3))
    await st.start(ignore)
    assert st.health().up
    return st


def _counter(server: OwnRedis, prefix: str, cfg: Config, tenant: str, period: str) -> float | None:
    tl = limit_table(cfg)[tenant]
    (b,) = [b for b in budgets_for(tl, tenant, datetime.now(UTC).timestamp()) if b.period == period]
    raw = redis.Redis(port=server.port).get(f"{prefix}{{{tenant}}}:{b.name}")
    return None if raw is None else float(raw)


async def _until(pred: Callable[[], bool]) -> None:
    for _ in range(500):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


async def test_replicas_seeding_at_once_neither_double_count_nor_overwrite(ledger: CountingLedger) -> None:
    cfg = load_config_text(CFG, "t.yaml")
    with own_redis() as server:
        states: list[SharedState] = [await _started(server, "rg:"), await _started(server, "rg:")]
        try:
            a, b = (Admission(st, spend=ledger) for st in states)
            await asyncio.gather(a.seed_all(cfg), b.seed_all(cfg))
            assert _counter(server, "rg:", cfg, "acme", "day") == pytest.approx(1.5)  # not 3.0
            assert _counter(server, "rg:", cfg, "acme", "month") == pytest.approx(1.5)
            assert _counter(server, "rg:", cfg, "beta", "day") == 0.0
            assert await _admitted(a, cfg, "beta", "b1")
            live = _counter(server, "rg:", cfg, "beta", "day")
            assert live and live > 0
            await b.seed_all(cfg)  # a replica starting later keeps the live counter
            assert _counter(server, "rg:", cfg, "beta", "day") == live
            assert not await _admitted(b, cfg, "acme", "a1")
        finally:
            for st in states:
                await st.close()


async def test_a_counter_redis_lost_is_reseeded_from_the_ledger(ledger: CountingLedger) -> None:
    cfg = load_config_text(CFG, "t.yaml")
    with own_redis() as server:
        st = await _started(server, "rg:")
        try:
            adm = Admission(st, spend=ledger)
            await adm.seed_all(cfg)
            assert all([await _admitted(adm, cfg, "beta", f"b{i}") for i in range(5)])  # in flight
            reserved = _counter(server, "rg:", cfg, "beta", "day")
            assert reserved and len(ledger.calls) == 1

            redis.Redis(port=server.port).flushall()  # FLUSHALL: every counter is gone
            results = await asyncio.gather(*(_admitted(adm, cfg, "acme", f"a{i}") for i in range(10)))
            assert results == [False] * 10  # spend still 1.5 USD of 1.0
            assert ledger.calls[1:] == [("acme",)]  # one seed for the ten requests

            server.stop()  # `redis-cli shutdown nosave`, then a fresh Redis on the same port
            assert not await _admitted(adm, cfg, "acme", "a-down")  # local fallback knows 1.5
            server.start()
            await _until(lambda: st.health().up)
            assert not await _admitted(adm, cfg, "acme", "a-back")
            assert await _admitted(adm, cfg, "beta", "b-back")
            # beta's counter came back with this replica's five in-flight reservations plus b-back's
            assert _counter(server, "rg:", cfg, "beta", "day") == pytest.approx(reserved * 6 / 5)
        finally:
            await st.close()


async def test_settling_and_resync_leave_a_lost_counter_for_the_ledger_seed(ledger: CountingLedger) -> None:
    cfg = load_config_text(CFG, "t.yaml")
    with own_redis() as server:
        st = await _started(server, "rg:")
        try:
            adm = Admission(st, spend=ledger)
            await adm.seed_all(cfg)
            (day,) = budgets_for(limit_table(cfg)["beta"], "beta", datetime.now(UTC).timestamp())
            redis.Redis(port=server.port).flushall()
            await st.settle(Settlement("beta", (), 0, (day,), 0.25))
            assert _counter(server, "rg:", cfg, "beta", "day") is None  # not recreated at 0.25

            server.stop()
            assert await _admitted(adm, cfg, "beta", "b-down")  # served locally, counted unsynced
            await st.settle(Settlement("beta", (), 0, (day,), 0.5))
            server.start()
            await _until(lambda: st.health().up)
            assert _counter(server, "rg:", cfg, "beta", "day") is None  # not pushed into a lost counter
            ledger.store.insert_usage([_row(9, "beta", datetime.now(UTC), 0.75)])  # its ledger row
            assert await _admitted(adm, cfg, "beta", "b-back")
            seeded = _counter(server, "rg:", cfg, "beta", "day")
            assert seeded is not None and 0.75 < seeded < 0.8  # ledger + this replica's reservations
        finally:
            await st.close()
