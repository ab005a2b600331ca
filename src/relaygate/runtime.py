"""Everything that is derived from one config, swapped as a whole on reload.

A request takes ``gateway.runtime`` once at its start and uses that object to the end, so a
hot reload (``SIGHUP`` / ``POST /admin/reload``) never mixes two configs inside one request.
Providers whose config did not change are carried over with their open connection pools;
breaker and cooldown state is carried over for deployments that still exist.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from relaygate.auth import Authenticator, KeyLookup, Principal
from relaygate.config.schema import (
    AnthropicProvider,
    Config,
    DeploymentConfig,
    GeminiProvider,
    LocalProvider,
)
from relaygate.errors import NotFoundError, PermissionDeniedError
from relaygate.ledger.records import AttemptRecord
from relaygate.policy import Candidate, CompiledPolicy, compile_policy, provider_facts
from relaygate.providers.anthropic import AnthropicMessagesProvider
from relaygate.providers.base import Provider
from relaygate.providers.gemini import GeminiAdapter
from relaygate.providers.local import LocalModelProvider
from relaygate.providers.openai_compat import OpenAICompatProvider
from relaygate.routing.router import HealthHook, Router

__all__ = ["Runtime", "build_providers", "build_runtime"]


def build_providers(config: Config, reuse: dict[str, Provider] | None = None) -> dict[str, Provider]:
    """One adapter per configured provider; an unchanged provider in ``reuse`` is kept as is."""
    reuse = reuse or {}
    out: dict[str, Provider] = {}
    for name, pc in config.providers.items():
        old = reuse.get(name)
        if old is not None and getattr(old, "source_config", None) == pc:
            out[name] = old
            continue
        if isinstance(pc, LocalProvider):
            new: Provider = LocalModelProvider(name, pc)
        elif isinstance(pc, GeminiProvider):
            new = GeminiAdapter(name, pc)
        elif isinstance(pc, AnthropicProvider):
            new = AnthropicMessagesProvider(name, pc)
        else:
            new = OpenAICompatProvider(name, pc)
        new.source_config = pc  # type: ignore[attr-defined]
        out[name] = new
    return out


@dataclass
class Runtime:
    config: Config
    providers: dict[str, Provider]
    router: Router
    auth: Authenticator
    policy: CompiledPolicy
    candidates: dict[str, tuple[Candidate, ...]]  # route -> policy candidates, config order
    deployments: dict[str, DeploymentConfig]
    max_body_bytes: int
    loaded_at: float

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


def build_runtime(
    config: Config,
    *,
    keys: KeyLookup | None,
    previous: Runtime | None = None,
    providers: dict[str, Provider] | None = None,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_attempt: Callable[[AttemptRecord], None] | None = None,
    on_health: HealthHook | None = None,
) -> Runtime:
    """Build (not start) a runtime; ``previous`` lends its providers and router state."""
    if providers is None:
        providers = build_providers(config, previous.providers if previous else None)
    router = Router(config, providers, clock=clock, rng=rng, on_attempt=on_attempt, on_health=on_health)
    deployments = {d.deployment_id: d for r in config.routes.values() for d in r.deployments}
    if previous is not None:
        router.inherit(previous.router, keep=set(deployments))
    facts = {name: provider_facts(pc) for name, pc in config.providers.items()}
    candidates = {
        name: tuple(Candidate(d.deployment_id, d.model, d.provider, facts[d.provider]) for d in r.deployments)
        for name, r in config.routes.items()
    }
    return Runtime(
        config=config,
        providers=providers,
        router=router,
        auth=Authenticator(config, keys),
        policy=compile_policy(config.policy),
        candidates=candidates,
        deployments=deployments,
        max_body_bytes=int(config.server.max_body_mb * 1024 * 1024),
        loaded_at=time.time(),
    )
