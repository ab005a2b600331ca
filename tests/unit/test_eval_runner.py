"""The eval runner against the provider simulator, through the real gateway in process.

Covers: cache keys (pure), persistence and resume after a cancelled run (the simulator's request
counts prove no case was sent twice), the response cache on a re-run, the cost ceiling, adaptive
back-off on 429, transient retries, the judge-route rule and the ledger rows the runner writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from relaygate.config import load_config_text
from relaygate.config.schema import Config
from relaygate.evals.cache import ResponseCache, cache_key, normalize_request
from relaygate.evals.executor import request_body
from relaygate.evals.limiter import AdaptiveLimiter
from relaygate.evals.model import Case, GraderSpec, Margin, Suite
from relaygate.evals.runner import run_suite
from relaygate.evals.store import EvalStore, RunMismatchError
from relaygate.ledger.migrate import open_database
from relaygate.ledger.records import UsageRecord
from relaygate.pipeline import Gateway
from relaygate.sim import SimHandle, run_sim_in_thread

REPLY = "Hello from the simulator."


def make_config(sim_url: str, *, max_attempts: int = 2, extra: str = "") -> Config:
    """Routes ``a`` and ``b`` (sim models model-a / model-b, 1 USD per 1M input tokens) and
    ``judge`` (model judge-m)."""
    return load_config_text(
        f"""
providers:
  sim: {{protocol: openai, base_url: "{sim_url}"}}
routes:
  a: {{deployments: [{{provider: sim, model: model-a, id: dep-a, price: {{input: 1.0, output: 0.0}}}}]}}
  b: {{deployments: [{{provider: sim, model: model-b, id: dep-b, price: {{input: 1.0, output: 0.0}}}}]}}
  judge: {{deployments: [{{provider: sim, model: judge-m, id: dep-judge}}]}}
retry: {{max_attempts: {max_attempts}, backoff_base_ms: 1, backoff_max_ms: 5}}
breaker: {{failure_threshold: 50}}
auth: {{mode: open}}
{extra}
"""
    )


def make_suite(n: int, name: str = "tiny", graders: tuple[GraderSpec, ...] | None = None) -> Suite:
    cases = tuple(
        Case(
            f"c{i:02d}",
            [{"role": "user", "content": f"Question number {i}: say hello."}],
            expected="hello",
            params={"max_tokens": 16},
            tags={"lang": "en" if i % 2 else "de"},
        )
        for i in range(n)
    )
    return Suite(
        name,
        cases,
        graders=graders if graders is not None else (GraderSpec("contains"),),
        margins=(Margin("contains", 0.1),),
    )


class LedgerStub:
    def __init__(self) -> None:
        self.rows: list[UsageRecord] = []

    async def submit(self, record: UsageRecord) -> None:
        self.rows.append(record)


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({"default": {"reply": REPLY}}) as handle:
        yield handle


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = open_database(f"sqlite:///{tmp_path / 'evals.db'}")
    yield eng
    eng.dispose()


@pytest.fixture
async def gateway(sim: SimHandle) -> AsyncIterator[Gateway]:
    gw = Gateway(make_config(sim.url), ledger=LedgerStub())
    await gw.start()
    yield gw
    await gw.close()


def requests_for(sim: SimHandle, model: str) -> int:
    return int(sim.stats()["models"].get(model, {}).get("requests", 0))


# --- cache keys (pure) -----------------------------------------------------------------------


def test_cache_key_ignores_what_cannot_change_the_answer() -> None:
    base = {"model": "x", "messages": [{"role": "user", "content": "Hi\r\nthere"}], "temperature": 0}
    same = {
        "model": "y",
        "stream": True,
        "user": "u1",
        "metadata": {"k": "v"},
        "temperature": 0.0,
        "seed": None,
        "messages": [{"role": "user", "name": None, "content": [{"type": "text", "text": "Hi\nthere"}]}],
    }
    assert cache_key("a", base) == cache_key("a", same)
    assert normalize_request(same) == {
        "messages": [{"role": "user", "content": "Hi\nthere"}],
        "temperature": 0.0,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "Hi there!"}]},
        {"temperature": 0.7},
        {"max_tokens": 5},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    ],
)
def test_cache_key_changes_with_the_request_and_the_target(change: dict[str, Any]) -> None:
    base = {"messages": [{"role": "user", "content": "Hi there"}], "temperature": 0}
    assert cache_key("a", base) != cache_key("a", {**base, **change})
    assert cache_key("a", base) != cache_key("b", base)


def test_request_body_carries_messages_tools_and_params_not_model() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    case = Case("x", [{"role": "user", "content": "q"}], tools=tools, params={"max_tokens": 3, "model": "m"})
    assert request_body(case) == {"max_tokens": 3, "messages": case.messages, "tools": tools}


# --- adaptive limiter (pure state, fake clock) -------------------------------------------------


def test_limiter_halves_once_per_pause_and_ramps_back() -> None:
    now = [100.0]
    lim = AdaptiveLimiter(8, clock=lambda: now[0])
    lim.on_rate_limit(2.0)
    lim.on_rate_limit(2.0)  # the same burst: no second cut
    assert (lim.limit, lim.paused_until) == (4, 102.0)
    now[0] = 103.0
    lim.on_rate_limit(0.5)
    assert lim.limit == 2
    for _ in range(2):
        lim.on_success()
    assert lim.limit == 3
    for _ in range(3):
        lim.on_success()
    assert lim.history == [8, 4, 2, 3, 4]


async def test_limiter_bounds_concurrency() -> None:
    lim = AdaptiveLimiter(2)
    peak, active = 0, 0

    async def job() -> None:
        nonlocal peak, active
        await lim.acquire()
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        lim.release()

    await asyncio.gather(*(job() for _ in range(10)))
    assert peak == 2


# --- runs through the gateway ------------------------------------------------------------------


async def test_run_persists_every_result_and_writes_ledger_rows(
    gateway: Gateway, engine: sa.Engine, sim: SimHandle
) -> None:
    store = EvalStore(engine)
    summary = await run_suite(
        make_suite(5), ["a", "b"], gateway=gateway, store=store, run_id="r1", progress=False
    )
    assert summary.status == "complete" and summary.errors == 0
    assert (summary.sent, summary.cache_hits, summary.resumed) == (10, 0, 0)
    stored = store.results("r1")
    assert len(stored) == 10
    first = next(s.result for s in stored if (s.result.case_id, s.result.target) == ("c00", "a"))
    assert first.output == REPLY and first.served_by == "dep-a" and first.refused is False
    assert [(sc.metric, sc.passed) for sc in first.scores] == [("contains", True)]
    assert first.prompt_tokens and first.cost_usd == pytest.approx(first.prompt_tokens / 1e6)
    assert stored[0].tags in ({"lang": "en"}, {"lang": "de"})
    rows = gateway.ledger.rows  # type: ignore[union-attr]
    assert len(rows) == 10 and {r.tenant for r in rows} == {"evals"}
    assert {r.endpoint for r in rows} == {"eval:run"} and {r.status for r in rows} == {200}
    assert requests_for(sim, "model-a") == requests_for(sim, "model-b") == 5


async def test_cancelled_run_resumes_without_sending_any_case_twice(engine: sa.Engine) -> None:
    scenario = {"default": {"reply": REPLY, "latency_ms": 60}}
    with run_sim_in_thread(scenario) as sim:
        gw = Gateway(make_config(sim.url))
        await gw.start()
        try:
            store, suite = EvalStore(engine), make_suite(12)
            task = asyncio.create_task(
                run_suite(suite, ["a"], gateway=gw, store=store, run_id="kill", concurrency=3, progress=False)
            )
            while len(store.results("kill")) < 4:  # noqa: ASYNC110  (polling what the run task writes)
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            saved = len(store.results("kill"))
            assert 4 <= saved < 12
            assert store.get_run("kill").status == "interrupted"  # type: ignore[union-attr]
            assert requests_for(sim, "model-a") == saved  # in-flight answers were kept, not lost

            summary = await run_suite(suite, ["a"], gateway=gw, store=store, run_id="kill", progress=False)
        finally:
            await gw.close()
        assert summary.status == "complete" and summary.resumed == saved
        assert len(store.results("kill")) == 12 and summary.sent == 12 - saved
        assert requests_for(sim, "model-a") == 12
        prompts = [r["body"]["messages"][0]["content"] for r in sim.requests("model-a")]
        assert len(prompts) == len(set(prompts)) == 12


async def test_rerun_under_a_new_id_is_served_from_the_cache(
    gateway: Gateway, engine: sa.Engine, sim: SimHandle
) -> None:
    store, cache, suite = EvalStore(engine), ResponseCache(engine), make_suite(4)
    first = await run_suite(
        suite, ["a"], gateway=gateway, store=store, cache=cache, run_id="c1", progress=False
    )
    assert first.spent_usd > 0 and cache.count("a") == 4
    again = await run_suite(
        suite, ["a"], gateway=gateway, store=store, cache=cache, run_id="c2", progress=False
    )
    assert requests_for(sim, "model-a") == 4  # nothing sent the second time
    assert (again.cache_hits, again.sent, again.spent_usd) == (4, 0, 0.0)
    assert again.cached == {(c.id, "a") for c in suite.cases}
    assert all(s.cached for s in store.results("c2")) and not any(s.cached for s in store.results("c1"))
    assert [r.output for r in again.results] == [REPLY] * 4
    assert again.to_dict()["results"][0]["cached"] is True


async def test_cost_ceiling_stops_sending_new_cases(engine: sa.Engine) -> None:
    # 10,000 prompt tokens at 1 USD per 1M: 0.01 USD per case; ceiling 0.03 with one at a time.
    scenario = {"default": {"reply": REPLY, "usage": {"prompt_tokens": 10_000, "completion_tokens": 1}}}
    with run_sim_in_thread(scenario) as sim:
        gw = Gateway(make_config(sim.url))
        await gw.start()
        try:
            summary = await run_suite(
                make_suite(10),
                ["a"],
                gateway=gw,
                store=EvalStore(engine),
                concurrency=1,
                cost_ceiling_usd=0.03,
                run_id="ceil",
                progress=False,
            )
        finally:
            await gw.close()
        assert requests_for(sim, "model-a") == 3
    assert summary.stopped_by_ceiling and summary.status == "cost_ceiling"
    assert (summary.sent, summary.not_sent) == (3, 7)
    assert summary.spent_usd == pytest.approx(0.03)
    assert EvalStore(engine).get_run("ceil").status == "cost_ceiling"  # type: ignore[union-attr]


async def test_rate_limits_halve_concurrency_and_every_case_still_gets_an_answer(engine: sa.Engine) -> None:
    limited = {"error": {"preset": "rate_limit"}, "headers": {"Retry-After": "0.2"}}
    scenario = {"models": {"model-a": {"reply": REPLY, "steps": [limited] * 4 + [{"status": 200}]}}}
    with run_sim_in_thread(scenario) as sim:
        gw = Gateway(make_config(sim.url, max_attempts=1))  # the router gives up at once: the runner waits
        await gw.start()
        try:
            summary = await run_suite(
                make_suite(8), ["a"], gateway=gw, store=EvalStore(engine), concurrency=4, progress=False
            )
        finally:
            await gw.close()
        assert requests_for(sim, "model-a") == 8 + 4
    assert summary.errors == 0 and len(summary.results) == 8
    assert summary.rate_limited == 4
    history = summary.concurrency["a"]
    assert history[:2] == [4, 2] and min(history) >= 1  # halved, then ramped back up
    assert history[-1] > min(history)


async def test_transient_errors_are_retried_and_client_errors_recorded(engine: sa.Engine) -> None:
    scenario = {
        "models": {
            "model-a": {"reply": REPLY, "steps": [{"error": {"preset": "server_error"}}, {"status": 200}]},
            "model-b": {"error": {"preset": "bad_request"}},
        }
    }
    with run_sim_in_thread(scenario) as sim:
        gw = Gateway(make_config(sim.url, max_attempts=1))
        await gw.start()
        try:
            store = EvalStore(engine)
            summary = await run_suite(
                make_suite(2), ["a", "b"], gateway=gw, store=store, concurrency=1, run_id="t", progress=False
            )
            assert summary.retries == 1 and requests_for(sim, "model-a") == 3
            errors = [r for r in summary.results if r.error]
            assert {r.target for r in errors} == {"b"} and len(errors) == 2
            assert all(r.scores == [] and r.output is None for r in errors)
            assert requests_for(sim, "model-b") == 2  # a client error is not retried
            sim.set_scenario({"default": {"reply": REPLY}})
            again = await run_suite(
                make_suite(2), ["a", "b"], gateway=gw, store=store, run_id="t", progress=False
            )
        finally:
            await gw.close()
    assert again.errors == 0 and again.sent == 2  # only the failed cases were sent again


async def test_judge_route_rules(gateway: Gateway, engine: sa.Engine) -> None:
    store = EvalStore(engine)
    with pytest.raises(ValueError, match="judge route 'a' is one of the targets"):
        await run_suite(
            make_suite(1), ["a", "b"], gateway=gateway, store=store, judge_route="a", progress=False
        )
    with pytest.raises(ValueError, match="unknown route 'nope'"):
        await run_suite(make_suite(1), ["nope"], gateway=gateway, store=store, progress=False)
    summary = await run_suite(
        make_suite(1),
        ["a"],
        gateway=gateway,
        store=store,
        judge_route="a",
        allow_self_judge=True,
        progress=False,
    )
    assert summary.judge == "a"


async def test_judge_and_pairwise_graders_call_the_judge_route(engine: sa.Engine) -> None:
    scenario = {
        "default": {"reply": REPLY},
        "models": {"judge-m": {"reply": "Fine. Rating: [[8]] and [[A]]"}},
    }
    graders = (GraderSpec("contains"), GraderSpec("judge"), GraderSpec("pairwise"))
    with run_sim_in_thread(scenario) as sim:
        gw = Gateway(make_config(sim.url))
        await gw.start()
        kw: dict[str, Any] = {"gateway": gw, "store": EvalStore(engine), "cache": ResponseCache(engine)}
        try:
            summary = await run_suite(
                make_suite(2, graders=graders),
                ["a", "b"],
                judge_route="judge",
                run_id="j",
                progress=False,
                **kw,
            )
            judge_calls, total = requests_for(sim, "judge-m"), sim.stats()["total"]
            again = await run_suite(
                make_suite(2, graders=graders),
                ["a", "b"],
                judge_route="judge",
                run_id="j2",
                progress=False,
                **kw,
            )
        finally:
            await gw.close()
        assert sim.stats()["total"] == total  # answers and judge verdicts all came from the cache
    assert again.cache_hits == 4 and again.spent_usd == 0.0
    scores_of = lambda s: {(r.case_id, r.target): r.scores for r in s.results}  # noqa: E731
    assert scores_of(again) == scores_of(summary)
    assert summary.grader_errors == []
    scores = {(r.target, s.metric): s for r in summary.results if r.case_id == "c00" for s in r.scores}
    assert scores[("a", "judge")].value == pytest.approx(7 / 9)
    assert scores[("a", "pairwise")].value == 0.5  # the incumbent is the pairwise baseline
    assert 0.0 <= scores[("b", "pairwise")].value <= 1.0
    # A judge call per answer and two orders per pairwise comparison; a and b answer alike, so
    # identical judge prompts may be served by the cache (whichever comes second).
    assert 2 * 1 + 2 * 1 <= judge_calls <= 2 * 2 + 2 * 2
    stored = {(s.result.case_id, s.result.target): s.result for s in EvalStore(engine).results("j")}
    assert any(s.metric == "pairwise" for s in stored[("c01", "b")].scores)


async def test_a_broken_grader_is_recorded_not_scored(gateway: Gateway, engine: sa.Engine) -> None:
    graders = (GraderSpec("contains"), GraderSpec("judge"))  # no judge route given
    summary = await run_suite(
        make_suite(1, graders=graders), ["a"], gateway=gateway, store=EvalStore(engine), progress=False
    )
    (result,) = summary.results
    assert [s.metric for s in result.scores] == ["contains"]
    (problem,) = summary.grader_errors
    assert problem["metric"] == "judge" and "judge" in problem["error"]


async def test_a_run_id_belongs_to_one_suite(gateway: Gateway, engine: sa.Engine) -> None:
    store = EvalStore(engine)
    await run_suite(make_suite(1), ["a"], gateway=gateway, store=store, run_id="same", progress=False)
    with pytest.raises(RunMismatchError):
        await run_suite(make_suite(2), ["a"], gateway=gateway, store=store, run_id="same", progress=False)
    loaded = store.load_summary("same")
    assert loaded is not None and loaded.margins == (Margin("contains", 0.1),)
    assert loaded.tags == {"c00": {"lang": "de"}}


def test_store_and_cache_round_trip_on_every_backend(db_url: str) -> None:
    """SQLite and PostgreSQL (jsonb): a NUL in an answer must not poison the row."""
    from relaygate.evals.cache import CachedResponse
    from relaygate.evals.model import CaseResult, Score

    engine = open_database(db_url)
    try:
        store, cache = EvalStore(engine), ResponseCache(engine)
        record, resumed = store.open_run("pg", make_suite(2), ["a", "b"], judge="judge", cost_ceiling_usd=1.5)
        assert not resumed and record.targets == ["a", "b"]
        response = {"choices": [{"message": {"role": "assistant", "content": "nul\x00here"}}]}
        result = CaseResult(
            "c00",
            "a",
            "nul\x00here",
            [Score("contains", 1.0, passed=True)],
            12.5,
            3,
            4,
            0.01,
            refused=False,
            served_by="dep-a",
            response=response,
        )
        store.save_result("pg", result, cached=True, tags={"lang": "de"})
        store.save_result("pg", result, cached=False, tags={"lang": "de"})  # replaces, no duplicate
        (stored,) = store.results("pg")
        assert stored.result.output == "nul\ufffdhere" and not stored.cached and stored.tags == {"lang": "de"}
        assert stored.result.scores == [Score("contains", 1.0, passed=True)]
        assert stored.result.response == {
            "choices": [{"message": {"role": "assistant", "content": "nul\ufffdhere"}}]
        }
        again, resumed = store.open_run("pg", make_suite(2), ["b", "c"])
        assert resumed and again.targets == ["a", "b", "c"]
        key = cache_key("a", {"messages": [{"role": "user", "content": "q"}]})
        cache.put(
            key,
            "a",
            {"messages": [{"role": "user", "content": "q"}]},
            CachedResponse(response, "dep-a", 5.0, 0.1),
        )
        hit = cache.get(key)
        assert (
            hit is not None
            and hit.served_by == "dep-a"
            and hit.cost_usd == 0.1
            and cache.get("0" * 64) is None
        )
        summary = store.load_summary("pg")
        assert summary is not None and summary.spent_usd == 0.01 and summary.targets == ["a", "b", "c"]
    finally:
        engine.dispose()
