"""Shared fixtures for the end-to-end tests: one provider simulator per module, a fresh SQLite
file per test, and a config builder that points the gateway at that simulator.

Fixture names start with ``e2e_`` so fixtures added later by other suites do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread

# The upstream models every e2e module's simulator knows. ``m1``/``m2`` answer; ``up400`` answers
# the client's own error (relayed, never failed over); ``up503`` is overloaded (retried, then
# failed over).
E2E_SIM_SCENARIO: dict[str, Any] = {
    "models": {
        "m1": {"reply": "hello there"},
        "m2": {"reply": "second deployment"},
        "up400": {"error": {"status": 400, "message": "upstream says no", "param": "messages"}},
        "up503": {"error": {"status": 503}},
    }
}


@pytest.fixture(scope="module")
def e2e_http() -> Iterator[httpx.Client]:
    """One raw HTTP client per module (building one loads the CA store: ~50 ms each)."""
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def e2e_openai() -> Iterator[Callable[..., openai.OpenAI]]:
    """``e2e_openai(base_url, api_key="placeholder")``: a real openai SDK client (no retries)
    for a gateway; all share one connection pool."""
    base = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="placeholder", max_retries=0)

    def make(base_url: str, api_key: str = "placeholder", **options: Any) -> openai.OpenAI:
        return base.with_options(base_url=base_url, api_key=api_key, **options)

    yield make
    base.close()


@pytest.fixture(scope="module")
def e2e_sim_module() -> Iterator[SimHandle]:
    """One simulator thread for the whole test module (starting one costs ~50 ms, but adds up)."""
    with run_sim_in_thread(E2E_SIM_SCENARIO) as sim:
        yield sim


@pytest.fixture
def e2e_sim(e2e_sim_module: SimHandle) -> SimHandle:
    """The module's simulator with the default scenario, counters and request log zeroed."""
    e2e_sim_module.set_scenario(E2E_SIM_SCENARIO)
    e2e_sim_module.reset()
    return e2e_sim_module


@pytest.fixture
def e2e_db_url(tmp_path: Any) -> str:
    """A SQLite file of this test's own (the gateway migrates it at start-up)."""
    return f"sqlite:///{tmp_path}/t.db"


@pytest.fixture
def e2e_config(e2e_sim: SimHandle) -> Callable[..., str]:
    """Builder of a gateway config YAML whose provider ``up`` is the simulator.

    Routes: ``chat`` (up/m1, priced 1.0/2.0 USD per 1M tokens), ``second`` (up/m2),
    ``bad`` (up/up400), ``down`` (up/up503), ``failover`` (up/up503 then up/m1).
    ``auth`` is ``open`` or ``keys``; ``extra`` is appended verbatim (e.g. ``tenants:`` or
    ``server:`` sections).
    """

    def build(*, auth: str = "open", extra: str = "") -> str:
        return f"""
providers:
  up: {{protocol: openai, base_url: "{e2e_sim.url}"}}
routes:
  chat: {{deployments: [{{provider: up, model: m1, price: {{input: 1.0, output: 2.0}}}}]}}
  second: {{deployments: [{{provider: up, model: m2}}]}}
  bad: {{deployments: [{{provider: up, model: up400}}]}}
  down: {{deployments: [{{provider: up, model: up503}}]}}
  failover: {{deployments: [{{provider: up, model: up503}}, {{provider: up, model: m1}}]}}
retry: {{max_attempts: 2, backoff_base_ms: 1, backoff_max_ms: 5}}
auth: {{mode: {auth}}}
{extra}
"""

    return build
