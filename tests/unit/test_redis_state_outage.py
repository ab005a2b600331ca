"""``RedisState`` against a Redis that hangs (SIGSTOP) rather than dies: no call waits much past
``op_timeout_ms``, the state reports itself down, and it comes back up after SIGCONT."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

from relaygate.config.state_schema import StateConfig
from relaygate.state.base import Ask, Limit, StateEvent
from relaygate.state.redis_state import RedisState
from tests.e2e.replicas import own_redis


async def _until(pred: Callable[[], bool]) -> None:
    """Poll ``pred`` every 10 ms for up to 5 s."""
    for _ in range(500):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


async def test_a_hung_redis_never_stalls_a_call_past_the_timeout() -> None:
    with own_redis() as server:
        cfg = StateConfig(
            backend="redis",
            redis_url=server.url,
            op_timeout_ms=80,
            connect_timeout_ms=200,
            reconnect_max_ms=200,
        )
        st = RedisState(cfg, origin="unit")
        events: list[StateEvent] = []

        async def record(ev: StateEvent) -> None:
            events.append(ev)

        await st.start(record)
        assert st.health().up and [e.kind for e in events] == ["resync"]
        lim = (Limit("k:h:requests", "requests", 1000, "key"),)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            verdict = await st.admit(Ask("r1", "g", lim, (), 0.0))
            first = time.monotonic() - t0
            assert verdict.ok and first < 0.5, f"first call took {first:.3f} s"
            assert not st.health().up
            t1 = time.monotonic()
            for i in range(20):  # while down, calls do not touch Redis at all
                assert (await st.admit(Ask(f"r{i + 2}", "g", lim, (), 0.0))).ok
            assert time.monotonic() - t1 < 0.05
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await _until(lambda: st.health().up)
        assert [e.kind for e in events] == ["resync", "resync"]  # told to re-publish on return
        await st.close()
