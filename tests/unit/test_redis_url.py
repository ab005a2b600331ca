"""The Redis URL is checked where it is given: inline at config load, from ``redis_url_env`` when
``check-config`` / ``serve`` resolve it (``resolve_redis_url``), with one line that names the
variable and never echoes its value."""

from __future__ import annotations

import pytest

from relaygate.config import load_config_text
from relaygate.config.state_schema import StateConfig, redis_url_problem, resolve_redis_url
from relaygate.errors import ConfigError
from relaygate.state.base import StateEvent
from relaygate.state.redis_state import RedisState, SharedStateError, publish_event


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:6379/0", None),
        ("rediss://:secret@cache.example:6380", None),
        ("redis://", None),
        ("unix:///run/redis.sock", None),
        ("notaurl", "must start with redis://"),
        ("http://x", "must start with redis://"),
        ("redis://host:port/0", "not a valid URL"),
        ("redis://host:99999", "not a valid URL"),
        ("redis://host/zero", "database must be a number"),
        ("unix://", "needs a socket path"),
    ],
)
def test_redis_url_problem(url: str, problem: str | None) -> None:
    got = redis_url_problem(url)
    assert got == problem if problem is None else (got is not None and problem in got)


def test_an_inline_url_is_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"state\.redis_url: .*not a valid URL"):
        load_config_text("state: {backend: redis, redis_url: 'redis://h:x/0'}", "t.yaml")


def test_the_env_var_is_checked_when_resolved() -> None:
    cfg = StateConfig(backend="redis", redis_url_env="RG_R")
    assert resolve_redis_url(cfg, {}) is None  # unset: serve degrades, check-config warns
    assert resolve_redis_url(cfg, {"RG_R": "redis://h:1/2"}) == "redis://h:1/2"
    with pytest.raises(ValueError, match="RG_R is not a Redis URL") as info:
        resolve_redis_url(cfg, {"RG_R": "pass:word@h"})
    assert "word" not in str(info.value)


async def test_a_bad_env_url_degrades_the_state_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_R", "notaurl")
    cfg = StateConfig(backend="redis", redis_url_env="RG_R")
    st = RedisState(cfg, origin="unit")
    assert not st.health().up and "RG_R is not a Redis URL" in (st.health().reason or "")
    with pytest.raises(SharedStateError, match="RG_R"):
        await publish_event(cfg, StateEvent("cutoffs"))
