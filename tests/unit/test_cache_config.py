"""The ``cache:`` sections of the config: defaults, strictness, and the Redis URL they need."""

from __future__ import annotations

import pytest

from relaygate.cache.redis_cache import RedisCache
from relaygate.cache.service import build_response_cache
from relaygate.config import load_config_text
from relaygate.errors import ConfigError

BASE = """
providers:
  up: {protocol: openai, base_url: "http://127.0.0.1:9"}
routes:
  chat:
    deployments: [{provider: up, model: m1}]
    cache: {enabled: true, ttl_s: 60, semantic: {enabled: true, threshold: 0.93}}
  plain: {deployments: [{provider: up, model: m1}]}
"""


def test_defaults_and_route_settings() -> None:
    cfg = load_config_text(BASE)
    assert cfg.cache.backend == "memory" and cfg.cache.default_ttl_s == 3600
    chat, plain = cfg.routes["chat"].cache, cfg.routes["plain"].cache
    assert chat.enabled and chat.ttl_s == 60 and chat.semantic.threshold == 0.93
    assert not chat.share_across_tenants and not chat.allow_nonzero_temperature
    assert not plain.enabled and not plain.semantic.enabled


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("cache: {backend: redis}", "cache.backend"),  # no Redis URL anywhere
        ("cache: {backend: memcached}", "cache.backend"),
        ("cache: {max_entries: 0}", "cache.max_entries"),
        ("cache: {ttl: 5}", "cache.ttl"),  # a typo is an error, not a silent default
    ],
)
def test_invalid_cache_sections_are_rejected(extra: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(BASE + extra)
    assert field in str(info.value)


def test_route_threshold_out_of_range_is_rejected() -> None:
    with pytest.raises(ConfigError):
        load_config_text(BASE.replace("threshold: 0.93", "threshold: 1.5"))


def test_redis_url_comes_from_the_cache_or_the_state_section(monkeypatch: pytest.MonkeyPatch) -> None:
    own = build_response_cache(load_config_text(BASE + 'cache: {backend: redis, redis_url: "redis://h:1/2"}'))
    assert isinstance(own.backend, RedisCache) and own.backend.url == "redis://h:1/2"
    from_state = load_config_text(
        BASE + 'cache: {backend: redis}\nstate: {backend: redis, redis_url: "redis://s:6379/0"}'
    )
    backend = build_response_cache(from_state).backend
    assert isinstance(backend, RedisCache) and backend.url == "redis://s:6379/0"
    monkeypatch.setenv("RG_TEST_REDIS", "redis://e:6379/3")
    from_env = load_config_text(
        BASE + "cache: {backend: redis}\nstate: {backend: redis, redis_url_env: RG_TEST_REDIS}"
    )
    backend = build_response_cache(from_env).backend
    assert isinstance(backend, RedisCache) and backend.url == "redis://e:6379/3"
