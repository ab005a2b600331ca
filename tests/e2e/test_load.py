"""200 concurrent requests while the primary flips between healthy and failing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import run_gateway
from tests.e2e.test_failover import MSG, config, two_deps

PRICES = {"p1/flipper": (1.0, 2.0), "p2/good": (3.0, 4.0)}  # USD per 1M tokens, see two_deps()
FAILURES = [
    {"error": {"status": 500}},
    {"error": {"preset": "region_block_451"}},
    {"reset": True},
    {"cut_after_chunks": 0},
    {"error": {"preset": "rate_limit"}, "headers": {"Retry-After": "0.05"}},
]


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({}) as handle:
        yield handle


def _flip(sim: SimHandle, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        healthy = i % 2 == 0
        flipper = {"reply": "primary says hi"} if healthy else FAILURES[(i // 2) % len(FAILURES)]
        sim.set_scenario({"models": {"flipper": flipper, "good": {"reply": "fallback answers here"}}})
        i += 1
        stop.wait(0.03)


async def _one(c: openai.AsyncOpenAI, i: int) -> tuple[str, int, int, str]:
    """(status, prompt, completion tokens, served deployment) as the client saw them."""
    if i % 2:
        async with c.chat.completions.with_streaming_response.create(
            model="chat", messages=MSG, stream=True, stream_options={"include_usage": True}
        ) as resp:
            dep = resp.headers["x-relaygate-deployment"]
            usage = None
            async for ch in await resp.parse():
                usage = ch.usage or usage
        assert usage is not None
        return "ok", usage.prompt_tokens, usage.completion_tokens, dep
    raw = await c.chat.completions.with_raw_response.create(model="chat", messages=MSG)
    comp = raw.parse()
    assert comp.usage is not None
    return "ok", comp.usage.prompt_tokens, comp.usage.completion_tokens, raw.headers["x-relaygate-deployment"]


async def test_200_concurrent_requests_while_primary_flips(sim: SimHandle, tmp_path: Path) -> None:
    stop = threading.Event()
    flipper = threading.Thread(target=_flip, args=(sim, stop), daemon=True)
    with run_gateway(
        config(sim, two_deps("flipper"), timeout_ms=20_000), storage_url=f"sqlite:///{tmp_path}/l.db"
    ) as gw:
        flipper.start()
        try:
            c = openai.AsyncOpenAI(base_url=gw.base_url, api_key="sk", max_retries=0, timeout=60)
            results = await asyncio.gather(*(_one(c, i) for i in range(200)), return_exceptions=True)
            await c.close()
        finally:
            stop.set()
            flipper.join()
        errors = [r for r in results if isinstance(r, BaseException)]
        # a fallback is always healthy, so no request may fail (not even cleanly)
        assert all(isinstance(e, openai.APIError) for e in errors), errors[:3]
        assert not errors, errors[:3]
        ok = [r for r in results if not isinstance(r, BaseException)]
        rows = await asyncio.to_thread(gw.ledger_rows, 200)
        assert len(rows) == 200
        assert {r.served_deployment for r in rows} <= set(PRICES)
        served_rows = [r for r in rows if r.status == 200 and r.error_code is None]
        assert sum(r.completion_tokens or 0 for r in served_rows) == sum(o[2] for o in ok)
        assert sum(r.prompt_tokens or 0 for r in served_rows) == sum(o[1] for o in ok)
        expected_cost = sum((p * PRICES[d][0] + k * PRICES[d][1]) / 1e6 for _, p, k, d in ok)
        assert sum(r.cost_usd or 0 for r in served_rows) == pytest.approx(expected_cost, rel=1e-9)
        assert gw.gateway.ledger.dropped == 0
