"""One gateway instance: the only module that composes providers, router, auth and ledger.

``Gateway`` owns resources opened at start-up (one pooled client per provider, the local
model, the ledger writer) and the request steps that are not HTTP: which route a principal
may use, running the failover loop, pricing and recording the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from relaygate.api.auth import Authenticator, KeyLookup, Principal
from relaygate.config.schema import Config, DeploymentConfig, LocalProvider
from relaygate.errors import NotFoundError, PermissionDeniedError
from relaygate.ledger.pricing import cost_usd
from relaygate.ledger.records import UsageRecord
from relaygate.observability.metrics import Metrics
from relaygate.protocols.openai import ChatRequest, Usage
from relaygate.providers.base import Provider
from relaygate.providers.local import LocalModelProvider
from relaygate.providers.openai_compat import OpenAICompatProvider
from relaygate.routing.attempts import Completion, OpenedStream, attempt_completion, attempt_stream
from relaygate.routing.router import Router, Served

__all__ = ["Gateway", "LedgerSink", "build_providers"]

log = logging.getLogger("relaygate")


class LedgerSink(Protocol):
    async def submit(self, record: UsageRecord) -> None: ...


def build_providers(config: Config) -> dict[str, Provider]:
    """One adapter per configured provider (nothing is opened until ``start``)."""
    out: dict[str, Provider] = {}
    for name, pc in config.providers.items():
        out[name] = (
            LocalModelProvider(name, pc) if isinstance(pc, LocalProvider) else OpenAICompatProvider(name, pc)
        )
    return out


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        ledger: LedgerSink | None = None,
        keys: KeyLookup | None = None,
        providers: dict[str, Provider] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.metrics = Metrics()
        self.providers = providers if providers is not None else build_providers(config)
        self.router = Router(config, self.providers, clock=clock, rng=rng, on_attempt=self.metrics.on_attempt)
        self.auth = Authenticator(config, keys)
        self.clock = clock
        self.max_body_bytes = int(config.server.max_body_mb * 1024 * 1024)
        self._deployments: dict[str, DeploymentConfig] = {
            d.deployment_id: d for r in config.routes.values() for d in r.deployments
        }

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.providers.values()))

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.providers.values()), return_exceptions=True)

    def routes_for(self, principal: Principal) -> list[str]:
        """Route names ``principal`` may call, in config order."""
        allowed = principal.allowed_routes
        return [r for r in self.config.routes if allowed is None or r in allowed]

    def resolve_route(self, principal: Principal, model: str) -> str:
        """Raises ``NotFoundError`` (unknown model) or ``PermissionDeniedError`` (not allowed)."""
        if model not in self.config.routes:
            raise NotFoundError(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        if principal.allowed_routes is not None and model not in principal.allowed_routes:
            raise PermissionDeniedError(
                f"Tenant '{principal.tenant}' may not use model '{model}'.", param="model"
            )
        return model

    async def complete(self, req: ChatRequest, served: Served) -> Completion:
        return await self.router.run(req.model, served, lambda p, d: attempt_completion(p, d, req))

    async def open_stream(self, req: ChatRequest, served: Served) -> OpenedStream:
        want_usage = self.ledger is not None or req.include_usage
        return await self.router.run(
            req.model, served, lambda p, d: attempt_stream(p, d, req, stream_usage=want_usage)
        )

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
        self.metrics.on_request(rec)
        if self.ledger is not None:
            await self.ledger.submit(rec)

    def refresh_gauges(self) -> None:
        for did, state in self.router.breakers.states().items():
            self.metrics.breaker_open.labels(did).set(0 if state == "closed" else 1)
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
