"""What one replica tells the others, and applies from them, through the shared state.

Out: a breaker that opens or a Retry-After cooldown that starts here (``Router.on_health``),
and a cutoff this replica sets, clears or detects (``CutoffMonitor.on_change``). In: the same
from the others: breakers and cooldowns go into this replica's router as remote openings (the
pure breaker's ``apply_remote_open``; never re-published), a cutoff notice makes the cutoff
monitor re-read the registry now instead of at its next poll. On ``resync`` (shared state came
back) this replica re-publishes what it holds, so openings made during an outage reach the rest.
Times on the wire are epoch seconds; each router keeps its own monotonic clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from relaygate.routing.breaker import BreakerState
from relaygate.routing.router import Router
from relaygate.state.base import SharedState, StateEvent
from relaygate.state.cutoffs import CutoffMonitor

__all__ = ["ReplicaSync"]

log = logging.getLogger("relaygate.replicas")


class ReplicaSync:
    """``router()`` returns the current runtime's router (it changes on reload)."""

    def __init__(
        self,
        state: SharedState,
        router: Callable[[], Router],
        cutoffs: CutoffMonitor,
        origin: str,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.router = router
        self.cutoffs = cutoffs
        self.origin = origin
        self.wall = wall
        self.applied = 0  # remote events that changed local state (a metric for tests and ops)
        self._tasks: set[asyncio.Task[None]] = set()

    def on_health(self, kind: str, deployment_id: str, remaining_s: float) -> None:
        """Router hook (sync, on the event loop): publish in the background."""
        if remaining_s <= 0:
            return
        ev = StateEvent(kind, deployment_id, self.wall() + remaining_s, self.origin)  # type: ignore[arg-type]
        self._spawn(self.state.publish(ev))

    async def on_cutoffs_changed(self) -> None:
        await self.state.publish(StateEvent("cutoffs", origin=self.origin))

    async def on_event(self, ev: StateEvent) -> None:
        if ev.kind == "cutoffs":
            await self.cutoffs.refresh(force=True)
        elif ev.kind == "resync":
            await self._republish()
        elif ev.origin != self.origin:
            remaining = ev.until - self.wall()
            if remaining > 0 and self.router().apply_remote(ev.kind, ev.subject, remaining):
                self.applied += 1
                log.info("applied %s of %s from %s (%.1f s left)", ev.kind, ev.subject, ev.origin, remaining)

    async def _republish(self) -> None:
        router = self.router()
        now = router.clock()
        for did, br in router.breakers.items():
            if br.state is BreakerState.OPEN and br.retry_after(now) > 0:
                self.on_health("breaker_open", did, br.retry_after(now))
        for did, until in list(router.cooldown_until.items()):
            if until > now:
                self.on_health("cooldown", did, until - now)
        await self.cutoffs.refresh(force=True)
        await self.on_cutoffs_changed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
