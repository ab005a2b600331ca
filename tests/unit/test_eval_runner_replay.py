"""Replay of captured traffic against a candidate route: label-free comparison, and payloads the
policy forbids for the candidate are skipped and counted, never sent (the simulator's counts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from relaygate.cli.main import app
from relaygate.config import load_config_text
from relaygate.evals.replay import load_capture, replay
from relaygate.pipeline import Gateway
from relaygate.sim import SimHandle, run_sim_in_thread
from tests.unit.test_eval_runner import REPLY, LedgerStub

CONFIG = """
providers:
  us: {{protocol: openai, base_url: "{url}", jurisdiction: US, regions: [US]}}
routes:
  cand: {{deployments: [{{provider: us, model: cand-m, id: cand-us, price: {{input: 2.0, output: 0.0}}}}]}}
  other: {{deployments: [{{provider: us, model: other-m}}]}}
tenants:
  acme: {{region: EU}}
  beta: {{region: US, allowed_routes: [other]}}
policy:
  rules:
    - name: eu-personal-eu-only
      match: {{tenant_region: [EU], min_data_class: personal}}
      allow_only: 'provider.regions.all(r, r in groups.EU)'
auth: {{mode: open}}
"""


def line(content: str, **meta: Any) -> dict[str, Any]:
    return {"request": {"model": "gpt-old", "messages": [{"role": "user", "content": content}]}, **meta}


CAPTURE = [
    line("Say hello.", tenant="acme", data_class="public", output=REPLY, latency_ms=900.0, cost_usd=0.001),
    line("Tell me about taxes.", tenant="acme", output="Taxes are levied by governments.", latency_ms=500.0),
    line("Do something bad.", tenant="acme", output="I'm sorry, but I can't help with that."),
    line("My medical record, please summarise.", tenant="acme", data_class="personal", output=REPLY),
    line("Hello from beta.", tenant="beta", output=REPLY),
    {
        "model": "gpt-old",
        "messages": [{"role": "user", "content": "Give JSON."}],
        "response_format": {"type": "json_object"},
        "tenant": "acme",
        "output": '{"ok": true}',
    },
]


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({"default": {"reply": REPLY}}) as handle:
        yield handle


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in CAPTURE) + "\n\n", "utf-8")
    return path


def test_load_capture_reads_both_shapes_and_names_bad_lines(capture: Path, tmp_path: Path) -> None:
    caps = load_capture(capture)
    assert [c.line for c in caps] == [1, 2, 3, 4, 5, 6]
    assert caps[0].tenant == "acme" and caps[0].data_class == "public" and caps[0].latency_ms == 900.0
    assert caps[5].body == {
        "model": "gpt-old",
        "messages": [{"role": "user", "content": "Give JSON."}],
        "response_format": {"type": "json_object"},
    }
    assert (
        caps[5].response is not None
        and caps[5].response["choices"][0]["message"]["content"] == '{"ok": true}'
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"request": {"messages": []}}\n', "utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*messages"):
        load_capture(bad)


async def test_replay_compares_and_skips_what_policy_forbids(capture: Path, sim: SimHandle) -> None:
    gw = Gateway(load_config_text(CONFIG.format(url=sim.url)), ledger=LedgerStub())
    await gw.start()
    try:
        report = await replay(load_capture(capture), "cand", gateway=gw, agreement="normalized")
    finally:
        await gw.close()
    assert report.total == 6 and report.compared == 4 and report.errors == 0
    assert report.skipped == {"policy_denied": 1, "route_not_allowed": 1}
    assert sim.stats()["models"]["cand-m"]["requests"] == 4  # skipped payloads were never sent
    sent = [r["body"]["messages"][0]["content"] for r in sim.requests("cand-m")]
    assert "My medical record, please summarise." not in sent
    assert report.rates["agreement"] == pytest.approx(1 / 4)  # only line 1 had the same answer
    assert report.rates["refused"] == 0.0 and report.rates["incumbent_refused"] == pytest.approx(1 / 4)
    assert report.rates["json_valid"] == 0.0 and report.rates["incumbent_json_valid"] == 1.0
    assert report.latency_ms["incumbent_mean"] == pytest.approx(700.0)
    assert report.latency_ms["mean_delta"] is not None and report.latency_ms["mean_delta"] < 0
    assert report.cost_usd["candidate_total"] > 0
    by_line = {i.line: i for i in report.items}
    assert by_line[4].status == "skipped" and by_line[4].reason == "policy_denied"
    assert by_line[1].served_by == "cand-us" and by_line[1].checks["agreement"] == 1.0
    rows = gw.ledger.rows  # type: ignore[union-attr]
    assert (
        len(rows) == 4
        and {r.tenant for r in rows} == {"evals"}
        and {r.endpoint for r in rows} == {"eval:replay"}
    )
    assert report.to_dict()["skipped_total"] == 2


async def test_replay_agreement_by_embedding_similarity(capture: Path, sim: SimHandle) -> None:
    pytest.importorskip("onnxruntime")
    gw = Gateway(load_config_text(CONFIG.format(url=sim.url)))
    await gw.start()
    try:
        report = await replay(load_capture(capture)[:2], "cand", gateway=gw, threshold=0.9)
    finally:
        await gw.close()
    if report.agreement_metric != "similarity":
        pytest.skip(f"embedding model not installed: {report.notes}")
    one, two = report.items
    assert one.checks["similarity"] == pytest.approx(1.0, abs=1e-3) and one.checks["agreement"] == 1.0
    assert two.checks["similarity"] < 0.9 and two.checks["agreement"] == 0.0


def test_replay_cli_json(capture: Path, sim: SimHandle, tmp_path: Path) -> None:
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text(CONFIG.format(url=sim.url), "utf-8")
    db = f"sqlite:///{tmp_path / 'rg.db'}"
    args = ["eval", "replay", str(capture), "--candidate", "cand", "--config", str(cfg), "--db", db]
    result = CliRunner().invoke(app, [*args, "--agreement", "normalized", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["compared"] == 4 and doc["skipped"] == {"policy_denied": 1, "route_not_allowed": 1}
    table = CliRunner().invoke(app, [*args, "--agreement", "normalized"])
    assert table.exit_code == 0 and "skipped: policy_denied" in table.stdout
    bad = CliRunner().invoke(app, [*args, "--candidate", "nope"])
    assert bad.exit_code == 2
