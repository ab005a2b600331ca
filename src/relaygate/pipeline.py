"""One gateway instance: the only module that composes runtime, policy, cutoffs and ledger.

``Gateway`` owns what lives across config reloads (metrics, the ledger writer, the key store,
the cutoff monitor) and the current ``Runtime`` (everything derived from one config). The
request steps that are not HTTP live here: plan (data class, PII, policy decision), run the
failover loop over the allowed candidates, price and record the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from relaygate.admission import Admission, LedgerSpend
from relaygate.auth import KeyLookup, Principal
from relaygate.cache.service import ResponseCache, build_response_cache
from relaygate.config.schema import Config, DeploymentConfig
from relaygate.errors import AllCandidatesFailedError, ErrorClass, PermissionDeniedError, UpstreamError
from relaygate.ledger.payload_store import PayloadRecord, PayloadStore
from relaygate.ledger.pricing import cost_usd
from relaygate.ledger.records import UsageRecord
from relaygate.observability.metrics import Metrics
from relaygate.policy import (
    DATA_CLASS_HEADER,
    Decision,
    RequestFacts,
    decide,
    detect_pii,
    effective_data_class,
    messages_text,
)
from relaygate.protocols.openai import ChatRequest, Usage
from relaygate.providers.base import Provider
from relaygate.replicas import ReplicaSync
from relaygate.routing.attempts import Completion, OpenedStream, attempt_completion, attempt_stream
from relaygate.routing.quality import QualitySource, read_quality, with_quality
from relaygate.routing.router import Served
from relaygate.routing.strategies import routing_reason
from relaygate.runtime import Runtime, build_runtime
from relaygate.state import SharedState, make_state
from relaygate.state.base import StateEvent
from relaygate.state.cutoffs import CutoffMonitor

__all__ = ["Gateway", "LedgerSink", "PayloadWriter", "Plan", "PolicyDeniedError"]

log = logging.getLogger("relaygate")


class LedgerSink(Protocol):
    async def submit(self, record: UsageRecord) -> None: ...


class PayloadWriter(Protocol):
    async def submit(self, record: PayloadRecord) -> None: ...


PRUNE_INTERVAL_S = 3600.0


class PolicyDeniedError(PermissionDeniedError):
    """Policy leaves no deployment for this request (403, code ``policy_denied``); ``plan``
    holds the decision so the response header and the ledger row can carry it."""

    code = "policy_denied"
    plan: Plan | None = None


@dataclass(slots=True)
class Plan:
    """What policy decided for one request: the allowed deployments, in config order."""

    route: str
    region: str | None
    data_class: str
    data_class_source: str
    pii: frozenset[str]
    decision: Decision
    candidates: list[DeploymentConfig]
    routing: str | None = None  # the strategy's reason for its first choice (cheapest_non_inferior)


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        ledger: LedgerSink | None = None,
        payloads: PayloadWriter | None = None,
        payload_store: PayloadStore | None = None,
        keys: KeyLookup | None = None,
        providers: dict[str, Provider] | None = None,
        cutoffs: CutoffMonitor | None = None,
        quality: QualitySource | None = None,
        cache: ResponseCache | None = None,
        state: SharedState | None = None,
        spend: LedgerSpend | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger = ledger
        self.payloads = payloads  # captured request payloads (opt-in), written off the request path
        self.payload_store = payload_store  # for pruning past capture.retention_days
        self._prune_task: asyncio.Task[None] | None = None
        self.keys = keys
        self.metrics = Metrics()
        self.cutoffs = cutoffs or CutoffMonitor(config.cutoffs, None)
        self._clock, self._rng = clock, rng
        # Rate limits, budgets and replica events (config ``state:``, fixed at start-up).
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.state = state or make_state(config.state, self.replica_id)
        self.admission = Admission(self.state, spend=spend)  # budgets seeded from ``spend`` (the ledger)
        self.sync: ReplicaSync | None = None
        if self.state.shared:
            self.sync = ReplicaSync(self.state, lambda: self.runtime.router, self.cutoffs, self.replica_id)
            self.cutoffs.on_change = self.sync.on_cutoffs_changed
        self._on_health = self.sync.on_health if self.sync is not None else None
        # The response cache outlives reloads: its backend (cache:) is fixed at start-up, while
        # each route's cache settings are read from the current config per request.
        self.cache = cache or build_response_cache(config)
        self.quality = quality  # published eval quality, merged over the config at every build
        self.runtime = build_runtime(
            with_quality(config, read_quality(quality)),
            keys=keys,
            providers=providers,
            clock=clock,
            rng=rng,
            on_attempt=self.metrics.on_attempt,
            on_health=self._on_health,
        )
        self._reload_lock = asyncio.Lock()

    @property
    def config(self) -> Config:
        return self.runtime.config

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.runtime.providers.values()))
        await self.cutoffs.start(self.probe)
        await self.state.start(self.sync.on_event if self.sync is not None else _ignore_event)
        await self.admission.seed_all(self.config)  # budgets spent before this start
        await self.cache.start()
        if self.payload_store is not None:
            self._prune_task = asyncio.create_task(self._prune_loop(), name="relaygate-payload-prune")

    async def close(self) -> None:
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
            self._prune_task = None
        await self.cutoffs.close()
        await self.state.close()
        if self.sync is not None:
            await self.sync.close()
        await self.cache.close()
        await asyncio.gather(*(p.close() for p in self.runtime.providers.values()), return_exceptions=True)

    async def reload(self, config: Config) -> None:
        """Swap in a new config atomically. Providers whose config did not change keep their
        pools; removed ones are closed after ``grace_s`` so in-flight requests can finish.
        Published eval quality (``quality``) is read again and merged over ``config``."""
        config = with_quality(config, await asyncio.to_thread(read_quality, self.quality))
        async with self._reload_lock:
            old = self.runtime
            new = build_runtime(
                config,
                keys=self.keys,
                previous=old,
                clock=self._clock,
                rng=self._rng,
                on_attempt=self.metrics.on_attempt,
                on_health=self._on_health,
            )
            fresh = [p for n, p in new.providers.items() if old.providers.get(n) is not p]
            await asyncio.gather(*(p.start() for p in fresh))
            self.runtime = new
            self.cutoffs.config = config.cutoffs
            gone = [p for n, p in old.providers.items() if new.providers.get(n) is not p]
            if gone:
                grace_s = max((t.timeouts.total_ms for t in old.config.providers.values()), default=0) / 1000
                asyncio.get_running_loop().call_later(
                    min(grace_s, 600), lambda: asyncio.ensure_future(_close_all(gone))
                )

    def plan(self, rt: Runtime, principal: Principal, req: ChatRequest, headers: Mapping[str, str]) -> Plan:
        """Data class (header, tenant default, PII) and the policy decision for one request.

        Raises ``InvalidRequestError`` for a bad data-class header and ``PolicyDeniedError``
        when policy (not cutoffs) leaves no deployment.
        """
        tenant_cfg = rt.config.tenants.get(principal.tenant)
        pii: frozenset[str] = frozenset()
        if rt.policy.pii_detection:
            pii = detect_pii(messages_text(req.data.get("messages") or []))
        data_class, source = effective_data_class(
            headers.get(DATA_CLASS_HEADER),
            tenant_cfg.default_data_class if tenant_cfg else None,
            rt.policy.default_data_class,
            pii,
        )
        facts = RequestFacts(principal.tenant, principal.region, data_class, req.model)
        decision = decide(facts, rt.candidates[req.model], rt.policy, self.cutoffs.view.pairs())
        allowed = set(decision.allowed)
        deps = [d for d in rt.config.routes[req.model].deployments if d.deployment_id in allowed]
        routing = routing_reason(rt.config.routes[req.model], deps)
        plan = Plan(req.model, principal.region, data_class, source, pii, decision, deps, routing)
        if not deps and not any(e.code == "cutoff" for e in decision.excluded):
            denied = PolicyDeniedError(
                f"Policy allows no deployment of model '{req.model}' for tenant '{principal.tenant}' "
                f"(region {principal.region or 'unknown'}, data class {data_class}): "
                + "; ".join(f"{e.deployment_id}: {e.message}" for e in decision.excluded),
                param="model",
            )
            denied.plan = plan
            raise denied
        return plan

    async def complete(self, rt: Runtime, plan: Plan, req: ChatRequest, served: Served) -> Completion:
        region = plan.region
        return await self._run(rt, plan, served, lambda p, d: attempt_completion(p, d, req, region=region))

    async def open_stream(self, rt: Runtime, plan: Plan, req: ChatRequest, served: Served) -> OpenedStream:
        want_usage = self.ledger is not None or req.include_usage
        region = plan.region
        return await self._run(
            rt, plan, served, lambda p, d: attempt_stream(p, d, req, stream_usage=want_usage, region=region)
        )

    async def run(self, rt: Runtime, plan: Plan, served: Served, attempt: Any) -> Any:
        """Run a caller-built ``attempt(provider, deployment)`` over the plan's candidates with
        the same failover, cutoff detection and error shaping as ``complete`` / ``open_stream``
        (``/v1/messages`` uses it to mix pass-through and translated deployments)."""
        return await self._run(rt, plan, served, attempt)

    async def _run(self, rt: Runtime, plan: Plan, served: Served, attempt: Any) -> Any:
        async def on_block(dep: DeploymentConfig, err: UpstreamError) -> None:
            if rt.config.cutoffs.detect:
                self.metrics.cutoffs_detected.labels(dep.provider, plan.region or "*").inc()
                await self.cutoffs.detected_block(dep.provider, plan.region, err.message[:300])

        try:
            return await rt.router.run(
                plan.route, served, attempt, candidates=plan.candidates, on_region_block=on_block
            )
        except AllCandidatesFailedError as exc:
            excluded = [e for e in plan.decision.excluded]
            if excluded:
                exc.message += "; excluded before routing: " + "; ".join(
                    f"{e.deployment_id}: {e.code} ({e.rule or e.message})" for e in excluded
                )
                if not exc.causes:
                    exc.status, exc.code = 503, "no_allowed_deployment"
            raise

    async def probe(self, provider: str, region: str) -> bool | None:
        """One minimal request to a deployment of ``provider`` as if from ``region``: True when it
        answers, False when it is still blocked, None when inconclusive (e.g. no deployment)."""
        rt = self.runtime
        prov = rt.providers.get(provider)
        dep = next((d for d in rt.deployments.values() if d.provider == provider), None)
        if prov is None or dep is None:
            return None
        body = (
            b'{"model":"%s","messages":[{"role":"user","content":"ping"}],"max_tokens":1}'
            % dep.model.encode()
        )
        req = ChatRequest(body=body, data={}, model=dep.model, stream=False, include_usage=False)
        try:
            await attempt_completion(prov, dep, req, region=None if region == "*" else region)
        except UpstreamError as err:
            return False if err.error_class is ErrorClass.REGION_BLOCKED else None
        return True

    def account(self, rec: UsageRecord, served: Served, usage: Usage | None) -> None:
        """Fill the served deployment, tokens and cost (USD) into ``rec``."""
        rec.attempts = served.attempts
        dep = served.deployment
        if dep is not None:
            rec.served_deployment, rec.served_provider = dep.deployment_id, dep.provider
        if usage is not None:
            rec.prompt_tokens, rec.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            rec.cached_tokens = usage.cached_tokens
            if dep is not None:
                rec.cost_usd = cost_usd(
                    dep.price, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
                )

    async def record(self, rec: UsageRecord) -> None:
        """Metrics now; the ledger row off the request path (the writer batches it)."""
        self.metrics.on_request(rec, known_route=rec.route in self.runtime.config.routes)
        if self.admission.pending:  # replace the budget reservation by the real cost, add tokens
            try:
                await self.admission.settle(rec)
            except Exception:  # settling must never fail a request or lose its ledger row
                log.exception("settling limits of %s failed", rec.request_id)
        if self.ledger is not None:
            await self.ledger.submit(rec)

    @staticmethod
    def wants_capture(config: Config, route: str | None, tenant: str | None) -> bool:
        """Whether this request's payload is kept: its route or its tenant opted in."""
        r = config.routes.get(route) if route is not None else None
        t = config.tenants.get(tenant) if tenant is not None else None
        return bool((r is not None and r.capture) or (t is not None and t.capture))

    async def capture(
        self, config: Config, rec: UsageRecord, req: ChatRequest, body: bytes | None = None
    ) -> None:
        """Keep the routed request (and the answer's text from the ``chat.completion`` ``body``;
        None for streams) when the route or tenant opted in. Queued for the payload writer, so
        the database is never waited on here; a failure is logged, never raised."""
        if (
            self.payloads is None
            or rec.route is None
            or not self.wants_capture(config, rec.route, rec.tenant)
        ):
            return
        row = PayloadRecord(
            request_id=rec.request_id,
            ts=rec.ts,
            route=rec.route,
            endpoint=rec.endpoint,
            request=req.data,
            tenant=rec.tenant,
            tenant_region=rec.tenant_region,
            data_class=rec.data_class,
            output=_answer_text(body) if body is not None else None,
            served_deployment=rec.served_deployment,
        )
        try:
            await self.payloads.submit(row)
        except Exception:  # capture must never fail a request
            log.exception("payload capture of %s failed", rec.request_id)

    async def prune_payloads(self) -> int:
        """Delete captured payloads older than ``capture.retention_days``; returns how many."""
        if self.payload_store is None:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=self.config.capture.retention_days)
        return await asyncio.to_thread(self.payload_store.prune, cutoff)

    async def _prune_loop(self) -> None:
        while True:
            try:
                n = await self.prune_payloads()
                if n:
                    log.info("pruned %d captured payloads past retention", n)
            except Exception:
                log.exception("payload pruning failed; retrying in %.0f s", PRUNE_INTERVAL_S)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def refresh_gauges(self) -> None:
        for did, state in self.runtime.router.breakers.states().items():
            self.metrics.breaker_open.labels(did).set(0 if state == "closed" else 1)
        self.metrics.cutoffs_active.set(len(self.cutoffs.view))
        self.metrics.shared_state_up.set(1 if self.state.health().up else 0)
        writer = self.ledger
        for attr, gauge in (
            ("pending", self.metrics.ledger_pending),
            ("written", self.metrics.ledger_written),
            ("write_errors", self.metrics.ledger_errors),
            ("dropped", self.metrics.ledger_dropped),
        ):
            value = getattr(writer, attr, None)
            if isinstance(value, int):
                gauge.set(value)


def _answer_text(body: bytes) -> str | None:
    """The first choice's message text of a ``chat.completion`` body (None if it has none)."""
    try:
        doc = orjson.loads(body)
        content = doc["choices"][0]["message"].get("content")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else None


async def _ignore_event(event: StateEvent) -> None:
    return None


async def _close_all(providers: list[Provider]) -> None:
    await asyncio.gather(*(p.close() for p in providers), return_exceptions=True)
