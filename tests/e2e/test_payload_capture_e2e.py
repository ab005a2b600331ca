"""Payload capture for replay: opt-in per route or tenant, written off the request path by the
payload writer, pruned after the retention period, and replayed from the ledger with
``relaygate replay --route R --since 7d --candidate D`` (a payload the policy forbids for the
candidate is skipped and counted)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from relaygate.cli.main import app
from relaygate.ledger.payload_store import PayloadRecord, PayloadStore
from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

REPLY = "Hello from the simulator."
ACME, BETA = "rg-test-acme-key", "rg-test-beta-key"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


CONFIG = f"""
providers:
  eu: {{{{protocol: openai, base_url: "{{url}}", jurisdiction: DE, regions: [DE]}}}}
  us: {{{{protocol: openai, base_url: "{{url}}", jurisdiction: US, regions: [US]}}}}
routes:
  chat:
    capture: true
    deployments: [{{{{provider: eu, model: inc-m, id: inc-eu, price: {{{{input: 1.0, output: 1.0}}}}}}}}]
  plain: {{{{deployments: [{{{{provider: eu, model: plain-m}}}}]}}}}
  cand:
    deployments: [{{{{provider: us, model: cand-m, id: cand-us, price: {{{{input: 2.0, output: 0.0}}}}}}}}]
tenants:
  acme: {{{{region: EU, keys: [{{{{key_sha256: "{_sha(ACME)}"}}}}]}}}}
  beta: {{{{region: EU, capture: true, keys: [{{{{key_sha256: "{_sha(BETA)}"}}}}]}}}}
policy:
  rules:
    - name: eu-personal-eu-only
      match: {{{{tenant_region: [EU], min_data_class: personal}}}}
      allow_only: 'provider.regions.all(r, r in groups.EU)'
capture: {{{{retention_days: 7}}}}
auth: {{{{mode: keys}}}}
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({"default": {"reply": REPLY}}) as handle:
        yield handle


@pytest.fixture
def setup(sim: SimHandle, tmp_path: Path) -> tuple[Path, str]:
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text(CONFIG.format(url=sim.url), "utf-8")
    return cfg, f"sqlite:///{tmp_path / 'rg.db'}"


def post(gw: RunningGateway, key: str, model: str, content: str, **extra: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", **extra.pop("headers", {})}
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    resp = httpx.post(f"{gw.base_url}/chat/completions", json=body, headers=headers, timeout=20)
    assert resp.status_code == 200, resp.text
    return resp


def payloads(gw: RunningGateway, route: str, expect: int, timeout: float = 10) -> list[PayloadRecord]:
    """Poll until ``route`` has ``expect`` captured payloads (the writer batches them)."""
    store: PayloadStore = gw.gateway.payload_store
    since = datetime.now(UTC) - timedelta(days=1)
    deadline = time.monotonic() + timeout
    while True:
        gw.call(gw.gateway.payloads.flush())
        rows = store.since(route, since)
        if len(rows) >= expect or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def test_capture_is_opt_in_per_route_or_tenant(setup: tuple[Path, str]) -> None:
    cfg, db = setup
    with run_gateway(cfg.read_text("utf-8"), storage_url=db) as gw:
        post(gw, ACME, "chat", "Say hello.")
        post(gw, ACME, "plain", "Not captured: neither route nor tenant opted in.")
        post(gw, BETA, "plain", "Captured: the tenant opted in.")
        with httpx.stream(
            "POST",
            f"{gw.base_url}/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "Stream it."}], "stream": True},
            headers={"authorization": f"Bearer {ACME}"},
            timeout=20,
        ) as resp:
            assert resp.status_code == 200 and b"[DONE]" in resp.read()
        rows = payloads(gw, "chat", 2)
        plain = payloads(gw, "plain", 1)
        gw.ledger_rows(4)
        usage = {r.request_id: r for r in gw.gateway.ledger._sink.list_usage(10)}
        again = gw.gateway.payload_store.since("chat", datetime.now(UTC) - timedelta(days=1))
    assert len(rows) == 2 and len(plain) == 1
    assert plain[0].tenant == "beta" and plain[0].request["messages"][0]["content"].startswith("Captured")
    sync, stream = sorted(rows, key=lambda r: r.request.get("stream") is True)
    assert sync.tenant == "acme" and sync.tenant_region == "EU" and sync.data_class == "internal"
    assert (
        sync.request["model"] == "chat" and sync.output == REPLY and sync.endpoint == "/v1/chat/completions"
    )
    assert sync.served_deployment == "inc-eu" and sync.request_id in usage
    assert stream.output is None and stream.request["stream"] is True
    # latency and cost come from the usage row with the same request id
    joined = {r.request_id: r for r in again}
    assert joined[sync.request_id].latency_ms == usage[sync.request_id].latency_ms
    assert joined[sync.request_id].cost_usd == usage[sync.request_id].cost_usd


def test_anthropic_messages_capture_the_translated_body(setup: tuple[Path, str]) -> None:
    cfg, db = setup
    with run_gateway(cfg.read_text("utf-8"), storage_url=db) as gw:
        resp = httpx.post(
            f"{gw.url}/v1/messages",
            json={"model": "chat", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi."}]},
            headers={"x-api-key": ACME, "anthropic-version": "2023-06-01"},
            timeout=20,
        )
        assert resp.status_code == 200, resp.text
        (row,) = payloads(gw, "chat", 1)
    assert row.endpoint == "/v1/messages" and row.output == REPLY
    assert row.request["messages"] == [{"role": "user", "content": "Hi."}] and "max_tokens" in json.dumps(
        row.request
    )


def test_retention_prunes_old_payloads(setup: tuple[Path, str]) -> None:
    cfg, db = setup
    with run_gateway(cfg.read_text("utf-8"), storage_url=db) as gw:
        store: PayloadStore = gw.gateway.payload_store
        now = datetime.now(UTC)
        body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
        store.insert(
            [
                PayloadRecord("req_old", now - timedelta(days=8), "chat", "/v1/chat/completions", body),
                PayloadRecord("req_new", now - timedelta(days=6), "chat", "/v1/chat/completions", body),
            ]
        )
        assert gw.call(gw.gateway.prune_payloads()) == 1
        left = [r.request_id for r in store.since("chat", now - timedelta(days=30))]
    assert left == ["req_new"]
    # start-up prunes too: a row past retention is gone once a gateway has started
    with run_gateway(cfg.read_text("utf-8"), storage_url=db) as gw:
        store = gw.gateway.payload_store
        store.insert([PayloadRecord("req_older", now - timedelta(days=9), "chat", "/v1/x", body)])
    with run_gateway(cfg.read_text("utf-8"), storage_url=db) as gw:
        deadline = time.monotonic() + 10
        while True:
            ids = [r.request_id for r in gw.gateway.payload_store.since("chat", now - timedelta(days=30))]
            if "req_older" not in ids or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert ids == ["req_new"]


def test_replay_from_the_ledger_skips_and_counts_what_policy_forbids(
    setup: tuple[Path, str], sim: SimHandle
) -> None:
    cfg, db = setup
    with run_gateway(cfg.read_text("utf-8"), storage_url=db) as gw:
        post(gw, ACME, "chat", "Say hello.")
        post(gw, ACME, "chat", "Tell me about taxes.")
        post(gw, ACME, "chat", "My medical record.", headers={"x-relaygate-data-class": "personal"})
        post(gw, ACME, "plain", "Other route, not replayed.")
        stream = {"stream": True, "stream_options": {"include_usage": True}}
        assert b"[DONE]" in post(gw, ACME, "chat", "A streamed one.", **stream).content
        rows = payloads(gw, "chat", 4)
    assert sorted(r.data_class or "" for r in rows) == ["internal", "internal", "internal", "personal"]
    sim.reset()
    args = ["replay", "--route", "chat", "--since", "7d", "--candidate", "cand", "--config", str(cfg)]
    args += ["--db", db, "--agreement", "normalized"]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["candidate"] == "cand" and doc["total"] == 4
    assert (
        doc["errors"] == 0
        and doc["compared"] == 3
        and doc["skipped"] == {"policy_denied": 1}
        and doc["skipped_total"] == 1
    )
    assert doc["rates"]["agreement"] == 1.0  # the sim answers every model the same (the stream: no answer)
    assert doc["latency_ms"]["incumbent_mean"] is not None and doc["cost_usd"]["candidate_total"] > 0
    stats = sim.stats()["models"]
    assert stats.get("cand-m", {}).get("requests") == 3  # the forbidden payload was never sent
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "skipped: policy_denied" in table.stdout, table.output
    none = CliRunner().invoke(app, [*args[:2], "nothing", *args[3:]])
    assert none.exit_code == 0 and "no captured payloads" in none.output
    bad = CliRunner().invoke(app, [*args, "--candidate", "nope"])
    assert bad.exit_code == 2
