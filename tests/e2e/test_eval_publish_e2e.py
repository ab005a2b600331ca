"""Eval quality feeds routing, end to end: a real eval run through the simulator finds the cheaper
deployment non-inferior; ``relaygate eval publish`` writes it; after ``POST /admin/reload`` the
running gateway (uvicorn, real openai SDK) sends the ``cheapest_non_inferior`` route to the cheaper
deployment and says why in ``x-relaygate-routing`` and the ledger row."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from relaygate.cli.main import app
from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import run_gateway

ADMIN_KEY = "admin-" + "q" * 30
MSG: Any = [{"role": "user", "content": "capital of France?"}]
SCENARIO: dict[str, Any] = {
    "models": {
        "big": {"reply": "The capital is Paris."},
        "small": {"reply": "Paris."},
        "bad": {"reply": "I do not know."},
    }
}
CONFIG = """providers:
  up: {{protocol: openai, base_url: "{url}"}}
routes:
  chat:
    strategy: cheapest_non_inferior
    deployments:
      - {{provider: up, model: big, price: {{input: 3.0, output: 15.0}}}}
      - {{provider: up, model: bad, price: {{input: 0.05, output: 0.1}}}}
      - {{provider: up, model: small, price: {{input: 0.1, output: 0.4}}}}
  eval-big: {{deployments: [{{provider: up, model: big}}]}}
  eval-small: {{deployments: [{{provider: up, model: small}}]}}
  eval-bad: {{deployments: [{{provider: up, model: bad}}]}}
auth: {{mode: open}}
"""
# 20 cases, all passed by both: the range bound 0.8 ** 20 < 0.05 gives PASS at margin 0.2.
SUITE = "name: capitals\ngraders: [contains]\nmargins: [{metric: contains, delta: 0.2}]\ncases:\n" + "".join(
    f"  - {{id: c{i:02d}, prompt: 'Capital of France ({i})?', expected: Paris}}\n" for i in range(20)
)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread(SCENARIO) as handle:
        yield handle


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_publish_and_reload_route_to_the_cheaper_non_inferior_deployment(
    sim: SimHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    monkeypatch.setenv("RELAYGATE_ADMIN_KEY", ADMIN_KEY)
    sim.reset()
    config, suite = tmp_path / "relaygate.yaml", tmp_path / "suite.yaml"
    config.write_text(CONFIG.format(url=sim.url), "utf-8")
    suite.write_text(SUITE, "utf-8")
    db = f"sqlite:///{tmp_path / 'rg.db'}"
    with run_gateway(config.read_text("utf-8"), storage_url=db, config_path=str(config)) as gw:
        client = e2e_openai(gw.base_url)

        def ask() -> tuple[str, str, str]:
            raw = client.chat.completions.with_raw_response.create(model="chat", messages=MSG)
            h, text = raw.headers, raw.parse().choices[0].message.content
            return (
                h["x-relaygate-deployment"],
                h["x-relaygate-routing"],
                text or "",
            )

        dep, why, text = ask()  # nothing published: the incumbent, although two are cheaper
        assert (dep, text) == ("up/big", "The capital is Paris.")
        assert why.startswith("cheapest_non_inferior: incumbent up/big") and "up/small (no published" in why

        args = ["--config", str(config), "--db", db, "--no-progress", "--run-id", "r1"]
        code, out = cli(
            "eval", "run", str(suite), "-t", "eval-big", "-t", "eval-small", "-t", "eval-bad", *args,
            "--out", str(tmp_path / "report"),
        )  # fmt: skip
        assert code == 1, out  # eval-bad FAILs (worst verdict); eval-small PASSes
        code, out = cli("eval", "publish", "r1", "--route", "chat", "--config", str(config), "--db", db)
        assert code == 0, out
        assert "POST /admin/reload" in out

        assert ask()[0] == "up/big"  # published, not yet reloaded: the running config stands
        resp = e2e_http.post(gw.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert resp.status_code == 200, resp.text
        dep, why, text = ask()
        assert (dep, text) == ("up/small", "Paris.")
        assert why.startswith("cheapest_non_inferior: up/small at 0.175 USD/1M (3:1 blend)")
        assert "non-inferior to up/big on capitals" in why and "up/bad (FAIL on capitals)" in why
        rows = gw.ledger_rows(expect=3 + 60)
        row = next(r for r in rows if r.route == "chat")  # newest first
        assert row.served_deployment == "up/small" and row.policy["routing"] == why
