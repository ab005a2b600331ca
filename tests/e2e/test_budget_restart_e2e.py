"""A tenant's spent budget stays spent across a gateway restart (memory state, the same SQLite
ledger) and across a Redis restart without persistence (Redis state): the ledger re-seeds it.
And a bad Redis URL in the env var is one config error line (exit 2), for check-config and serve.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway, free_port, run_gateway
from tests.e2e.replicas import own_redis, state_config, wait_until

REPO = Path(__file__).resolve().parents[2]
KEY = "bud-" + secrets.token_hex(16)
MSG: Any = [{"role": "user", "content": "hello"}]


def _config(sim: SimHandle, extra: str = "") -> str:
    return f"""
providers:
  up: {{protocol: openai, base_url: "{sim.url}"}}
routes:
  chat: {{deployments: [{{provider: up, model: m1, price: {{input: 10.0, output: 20.0}}}}]}}
tenants:
  small: {{keys: [{{key_env: RG_BUDGET_KEY}}], budget: {{usd_per_day: 0.0001}}}}
auth: {{mode: keys}}
{extra}
"""


def _call(gw: RunningGateway) -> int:
    client = openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0, timeout=20)
    try:
        client.chat.completions.create(model="chat", messages=MSG, max_tokens=4)
    except openai.RateLimitError as exc:
        assert exc.body["code"] == "budget_exceeded"  # type: ignore[index]
        return 429
    return 200


def _spend_it(gw: RunningGateway) -> None:
    statuses = [_call(gw) for _ in range(20)]
    assert statuses[0] == 200 and 429 in statuses, statuses


def test_a_spent_budget_stays_spent_after_a_restart(
    e2e_sim: SimHandle, e2e_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RG_BUDGET_KEY", KEY)
    config = _config(e2e_sim)
    with run_gateway(config, storage_url=e2e_db_url) as gw:
        _spend_it(gw)
    with run_gateway(config, storage_url=e2e_db_url) as gw:  # a fresh process, the same ledger
        assert [_call(gw) for _ in range(3)] == [429, 429, 429]


def test_a_spent_budget_stays_spent_after_redis_restarts_without_persistence(
    e2e_sim: SimHandle, e2e_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RG_BUDGET_KEY", KEY)
    with own_redis() as server:
        with run_gateway(_config(e2e_sim, state_config(server.url)), storage_url=e2e_db_url) as gw:
            _spend_it(gw)
            gw.flush_ledger()
            server.stop()  # as `redis-cli shutdown nosave`: every counter is gone
            server.start()
            wait_until(lambda: gw.gateway.state.health().up)
            assert [_call(gw) for _ in range(3)] == [429, 429, 429]


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_bad_redis_url_in_the_env_var_is_one_config_error(tmp_path: Path, command: str) -> None:
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text(
        f"server: {{port: {free_port()}}}\n"
        "state: {backend: redis, redis_url_env: RG_TEST_REDIS_URL}\n"
        "providers: {up: {protocol: openai, base_url: 'http://127.0.0.1:9/v1'}}\n"
        "routes: {chat: {deployments: [{provider: up, model: m1}]}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RELAYGATE_DB_URL", "RELAYGATE_CONFIG")}
    env.update(
        RG_TEST_REDIS_URL="notaurl", RELAYGATE_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO / "src")
    )
    argv = [sys.executable, "-c", "from relaygate.cli.main import main; main()", command, "-c", str(cfg)]
    got = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20, check=False)
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in got.stderr, got.stderr
    assert "state.redis_url_env" in lines[0] and "RG_TEST_REDIS_URL" in lines[0]
    assert "redis://" in lines[0] and "notaurl" not in lines[0]  # the value may hold a password
