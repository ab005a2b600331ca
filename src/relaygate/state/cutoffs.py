"""The gateway's live cutoff set: polls the registry, records detections, re-probes, expires.

The hot path only reads ``monitor.view`` (an immutable ``CutoffView``). A background task polls
``CutoffStore.version()`` every ``cutoffs.poll_interval_s`` (so ``relaygate cutoff set`` on the
CLI reaches a running gateway within about a second), closes expired cutoffs, and re-probes
detected ones on the schedule documented in ``relaygate.policy.cutoffs``. Without a store
(tests, storage disabled) the view lives in memory only. ``on_change`` (set by the gateway when
replicas share state) is awaited after this process sets, clears or detects a cutoff, so the
other replicas refresh at once instead of at their next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from relaygate.config.schema import CutoffConfig
from relaygate.ledger.cutoff_store import Cutoff, CutoffStore, normalize_region
from relaygate.policy.cutoffs import CutoffView, probe_due, should_auto_clear

__all__ = ["CutoffMonitor", "ProbeFn"]

log = logging.getLogger("relaygate.cutoffs")

# (provider, region) -> True when the provider answered normally, False when still blocked.
ProbeFn = Callable[[str, str], Awaitable[bool | None]]


class CutoffMonitor:
    def __init__(self, config: CutoffConfig, store: CutoffStore | None) -> None:
        self.config = config
        self.store = store
        self.view = CutoffView()
        self.detected = 0  # cutoffs detected by this process (a metric)
        self._task: asyncio.Task[None] | None = None
        self._probe: ProbeFn | None = None
        self.on_change: Callable[[], Awaitable[None]] | None = None

    async def start(self, probe: ProbeFn | None = None) -> None:
        self._probe = probe
        await self.refresh(force=True)
        if self.store is not None:
            self._task = asyncio.create_task(self._loop(), name="relaygate-cutoffs")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self, force: bool = False) -> None:
        """Rebuild the view if the registry changed (or ``force``)."""
        if self.store is None:
            return
        version = await self.store.aversion()
        if force or version != self.view.version:
            self.view = CutoffView.of(await self.store.aactive(), version)

    async def detected_block(self, provider: str, region: str | None, reason: str) -> None:
        """An upstream said this region is blocked: cut (provider, region) now, durably."""
        region = normalize_region(region)
        if self.view.is_cut(provider, region) is not None:
            return
        self.detected += 1
        log.warning("cutoff detected: %s for region %s: %s", provider, region, reason)
        now = datetime.now(UTC)
        local = Cutoff(provider=provider, region=region, reason=reason, source="detected", created_at=now)
        self.view = CutoffView.of([*self.view.cutoffs, local], self.view.version)
        if self.store is not None:
            await self.store.aset(provider, region, reason, "detected", actor="gateway")
            await self.refresh(force=True)
            await self._changed()

    async def set(
        self, provider: str, region: str | None, reason: str, actor: str, expires_at: datetime | None = None
    ) -> Cutoff:
        if self.store is None:
            cut = Cutoff(
                provider=provider,
                region=normalize_region(region),
                reason=reason,
                source="operator",
                created_at=datetime.now(UTC),
                expires_at=expires_at,
            )
            self.view = CutoffView.of([*self.view.cutoffs, cut], self.view.version)
            return cut
        cut = await self.store.aset(provider, region, reason, "operator", expires_at, actor=actor)
        await self.refresh(force=True)
        await self._changed()
        return cut

    async def clear(self, provider: str, region: str | None, actor: str, reason: str = "") -> bool:
        if self.store is None:
            region = normalize_region(region)
            keep = [c for c in self.view.cutoffs if (c.provider, c.region) != (provider, region)]
            changed = len(keep) != len(self.view.cutoffs)
            self.view = CutoffView.of(keep, self.view.version)
            return changed
        done = await self.store.aclear(provider, region, actor=actor, reason=reason)
        await self.refresh(force=True)
        await self._changed()
        return done

    async def _changed(self) -> None:
        if self.on_change is not None:
            try:
                await self.on_change()
            except Exception:  # telling the others is best effort; their DB poll still runs
                log.exception("publishing a cutoff change failed")

    async def _loop(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                now = datetime.now(UTC)
                expiry = self.view.next_expiry
                if expiry is not None and expiry <= now:
                    await self.store.aexpire(actor="gateway")
                await self.refresh()
                await self._probe_due(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # the registry is best effort: keep serving on the last view
                log.exception("cutoff poll failed; keeping the last known cutoffs")

    async def _probe_due(self, now: datetime) -> None:
        if self._probe is None or self.store is None:
            return
        for cut in self.view.cutoffs:
            if cut.source != "detected" or not probe_due(cut, now, self.config.probe_interval_s):
                continue
            ok = await self._probe(cut.provider, cut.region)
            if ok is None:
                continue
            updated = await self.store.arecord_probe(cut.provider, cut.region, ok)
            log.info("cutoff probe %s:%s -> %s", cut.provider, cut.region, "ok" if ok else "still blocked")
            if updated is not None and should_auto_clear(updated, self.config.clear_after_successes):
                await self.store.aclear(
                    cut.provider,
                    cut.region,
                    actor="gateway",
                    reason=f"{updated.probe_successes} successful probes",
                )
                await self.refresh(force=True)
                await self._changed()
                continue
            await self.refresh(force=True)
