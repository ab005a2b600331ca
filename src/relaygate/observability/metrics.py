"""Prometheus metrics of one gateway instance (own registry: no process-global state).

Names follow Prometheus conventions (https://prometheus.io/docs/practices/naming/): base
units (seconds, USD), ``_total`` for counters. The per-request updates go through a cache of
labelled children: ``labels()`` validates and hashes its arguments under a lock on every call,
which showed up in profiles (bench/flamegraphs/README.md); label sets are bounded (known routes,
statuses, deployments), so the cache is too.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from relaygate.ledger.records import AttemptRecord, UsageRecord

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "relaygate_requests_total", "Client requests by route and status", ["route", "status"], registry=r
        )
        self.attempts = Counter(
            "relaygate_upstream_attempts_total",
            "Upstream attempts by deployment and outcome",
            ["deployment", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "relaygate_request_duration_seconds",
            "Client request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "relaygate_time_to_first_token_seconds",
            "Stream time to first content",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "relaygate_tokens_total", "Tokens by deployment and kind", ["deployment", "kind"], registry=r
        )
        self.cost = Counter(
            "relaygate_cost_usd_total", "Cost in USD by deployment", ["deployment"], registry=r
        )
        self.breaker_open = Gauge(
            "relaygate_circuit_breaker_open",
            "1 when the deployment's breaker is open or half-open",
            ["deployment"],
            registry=r,
        )
        self.cutoffs_detected = Counter(
            "relaygate_cutoffs_detected_total",
            "Region blocks detected from upstream answers",
            ["provider", "region"],
            registry=r,
        )
        self.cutoffs_active = Gauge("relaygate_cutoffs_active", "Cutoffs in force", registry=r)
        self.shared_state_up = Gauge(
            "relaygate_shared_state_up",
            "1 when the shared state (state.backend) is reachable; 0 while serving on local state",
            registry=r,
        )
        self.policy_exclusions = Counter(
            "relaygate_policy_exclusions_total",
            "Deployments excluded before routing, by code",
            ["code"],
            registry=r,
        )
        self.ledger_pending = Gauge(
            "relaygate_ledger_pending_rows", "Ledger rows not yet written", registry=r
        )
        self.ledger_written = Gauge("relaygate_ledger_written_rows", "Ledger rows written", registry=r)
        self.ledger_errors = Gauge("relaygate_ledger_write_errors", "Failed ledger batch writes", registry=r)
        self.ledger_dropped = Gauge(
            "relaygate_ledger_dropped_rows", "Ledger rows lost (should be 0)", registry=r
        )
        self.cache_requests = Counter(
            "relaygate_cache_requests_total",
            "Requests on caching routes by cache result (hit, semantic_hit, miss, skip)",
            ["route", "result"],
            registry=r,
        )

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, created once per label set."""
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def on_attempt(self, a: AttemptRecord) -> None:
        self._child(self.attempts, a.deployment, a.error_class or "ok").inc()

    def on_request(self, rec: UsageRecord, known_route: bool = True) -> None:
        """``known_route`` False (an unknown model name) labels the series ``route=""`` so callers
        cannot create unbounded series."""
        route = (rec.route or "") if known_route else ""
        self._child(self.requests, route, str(rec.status)).inc()
        if rec.cache is not None:  # the route caches: hit, semantic_hit, miss or skip
            self._child(self.cache_requests, route, rec.cache).inc()
        if rec.latency_ms is not None:
            self._child(self.latency, route).observe(rec.latency_ms / 1000)
        if rec.ttft_ms is not None:
            self._child(self.ttft, route).observe(rec.ttft_ms / 1000)
        dep = rec.served_deployment
        if dep:
            if rec.prompt_tokens:
                self._child(self.tokens, dep, "prompt").inc(rec.prompt_tokens)
            if rec.completion_tokens:
                self._child(self.tokens, dep, "completion").inc(rec.completion_tokens)
            if rec.cost_usd:
                self._child(self.cost, dep).inc(rec.cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)
