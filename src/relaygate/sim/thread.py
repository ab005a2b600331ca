"""Run a ``SimServer`` on its own event loop in a daemon thread, for sync tests and other threads.

Every handle method hops onto the simulator's loop, so the state is only ever touched there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from relaygate.sim.scenario import Scenario
from relaygate.sim.server import SimServer

__all__ = ["SimHandle", "run_sim_in_thread"]

_T = TypeVar("_T")
_CALL_TIMEOUT_S = 10.0


class SimHandle:
    """Thread-safe access to a simulator running in another thread; ``url`` is ``http://HOST:PORT/v1``."""

    def __init__(self, sim: SimServer, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self.sim = sim
        self.url = url
        self._loop = loop

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        async def invoke() -> _T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(_CALL_TIMEOUT_S)

    def set_scenario(self, scenario: Scenario | dict[str, Any]) -> None:
        """Replace the scenario (step positions restart). Raises ScenarioError."""
        self._call(self.sim.set_scenario, scenario)

    def stats(self) -> dict[str, Any]:
        """``{"models": {model: {"requests": n}}, "total": n}``."""
        return self._call(self.sim.stats)

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """The last requests, oldest first: ``[{"model", "path", "body", "headers"}]``."""
        return self._call(self.sim.requests, model)

    def reset(self) -> None:
        """Zero counters and step positions, empty the request log."""
        self._call(self.sim.reset)


def _serve_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


@contextmanager
def run_sim_in_thread(
    scenario: Scenario | dict[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int | None = None,
) -> Iterator[SimHandle]:
    """Start a simulator on a fresh event loop in a daemon thread; stop it cleanly on exit.

    Raises ScenarioError (invalid scenario) or OSError (port in use) before yielding.
    """
    sim = SimServer(scenario, seed=seed)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_serve_forever, args=(loop,), name="relaygate-sim", daemon=True)
    thread.start()
    try:
        url = asyncio.run_coroutine_threadsafe(sim.start(host, port), loop).result(_CALL_TIMEOUT_S)
        try:
            yield SimHandle(sim, loop, url)
        finally:
            asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(_CALL_TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CALL_TIMEOUT_S)
