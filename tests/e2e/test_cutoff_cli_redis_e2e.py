"""``relaygate cutoff set|clear`` on the CLI reaches a running gateway through Redis within a
second, although that gateway polls its database only every 30 s: only the published notice can
deliver the change in time, so the test fails if the CLI stops publishing.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from relaygate.cli.main import app as main_app
from relaygate.sim import SimHandle
from tests.e2e.harness import RunningGateway, run_gateway
from tests.e2e.replicas import health, shared_redis_or_skip, state_config, wait_until

MSG: Any = [{"role": "user", "content": "hello"}]


def _cutoffs(http: httpx.Client, gw: RunningGateway) -> list[str]:
    cuts: list[str] = health(http, gw)["cutoffs"]
    return cuts


def _has(http: httpx.Client, gw: RunningGateway, cut: str) -> bool:
    return cut in _cutoffs(http, gw)


def test_cli_cutoff_reaches_a_gateway_with_a_30_s_poll_within_a_second(
    e2e_sim: SimHandle, e2e_http: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELAYGATE_DB_URL", raising=False)
    monkeypatch.delenv("RELAYGATE_CONFIG", raising=False)
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    config = f"""
storage: {{url: "{db}"}}
providers:
  up: {{protocol: openai, base_url: "{e2e_sim.url}"}}
  up2: {{protocol: openai, base_url: "{e2e_sim.url}"}}
routes:
  chat: {{deployments: [{{provider: up, model: m1}}, {{provider: up2, model: m2}}]}}
cutoffs: {{poll_interval_s: 30, detect: false}}
auth: {{mode: open}}
{state_config(shared_redis_or_skip())}
"""
    path = tmp_path / "relaygate.yaml"
    path.write_text(config)
    with (
        run_gateway(config, storage_url=db) as gw,
        openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0, timeout=20) as client,
    ):
        wait_until(lambda: health(e2e_http, gw)["shared_state"]["up"], timeout=5)
        cli = CliRunner()
        result = cli.invoke(main_app, ["cutoff", "set", "up", "--reason", "drill", "--config", str(path)])
        t_set = time.monotonic()
        assert result.exit_code == 0, result.output
        assert "notified the replicas through Redis (1 listening)" in result.stderr
        wait_until(partial(_has, e2e_http, gw, "up:*"), timeout=1.0)
        assert time.monotonic() - t_set < 1.0
        e2e_sim.reset()
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG)
        assert raw.headers["x-relaygate-provider"] == "up2" and e2e_sim.requests("m1") == []

        result = cli.invoke(main_app, ["cutoff", "clear", "up", "--config", str(path)])
        t_clear = time.monotonic()
        assert result.exit_code == 0, result.output
        wait_until(lambda: _cutoffs(e2e_http, gw) == [], timeout=1.0)
        assert time.monotonic() - t_clear < 1.0
