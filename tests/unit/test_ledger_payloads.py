"""Migration 0004 (payloads) upgrades a 0003 database in place, and ``PayloadStore`` writes,
reads by route and time (joined with the usage row's latency and cost) and prunes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from relaygate.ledger.migrate import head_revision, open_database
from relaygate.ledger.payload_store import PayloadRecord, PayloadStore
from relaygate.ledger.records import UsageRecord
from relaygate.ledger.schema import metadata
from relaygate.ledger.usage_store import UsageStore
from tests.unit.test_cutoff_migration import current_revision, run_alembic

NOW = datetime.now(UTC).replace(microsecond=0)
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def test_upgrade_from_0003_adds_payloads_in_place(db_url: str) -> None:
    run_alembic(db_url, "upgrade", "0003")
    engine = open_database(db_url)  # what the CLI and the gateway do at start
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert "payloads" in sa.inspect(conn).get_table_names()
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()
    run_alembic(db_url, "downgrade", "0003")
    engine = open_database(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_payload_store_round_trip_since_and_prune(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store = PayloadStore(engine)
        store.insert([])
        UsageStore(engine).insert_usage(
            [
                UsageRecord(
                    "req_1", NOW, "/v1/chat/completions", 200, route="chat", latency_ms=12.5, cost_usd=0.25
                )
            ]
        )
        store.insert(
            [
                PayloadRecord(
                    "req_1",
                    NOW,
                    "chat",
                    "/v1/chat/completions",
                    BODY,
                    tenant="acme",
                    tenant_region="EU",
                    data_class="personal",
                    output="hello",
                    served_deployment="p/m",
                ),
                PayloadRecord("req_2", NOW - timedelta(days=3), "chat", "/v1/messages", BODY),
                PayloadRecord("req_3", NOW - timedelta(days=10), "chat", "/v1/chat/completions", BODY),
                PayloadRecord("req_4", NOW, "other", "/v1/chat/completions", BODY),
            ]
        )
        rows = store.since("chat", NOW - timedelta(days=7))
        assert [r.request_id for r in rows] == ["req_2", "req_1"]  # oldest first, route only
        one = rows[1]
        assert (one.tenant, one.tenant_region, one.data_class, one.output) == (
            "acme",
            "EU",
            "personal",
            "hello",
        )
        assert one.request == BODY and one.ts == NOW and one.served_deployment == "p/m"
        assert (one.latency_ms, one.cost_usd) == (12.5, 0.25)
        assert (rows[0].latency_ms, rows[0].output) == (None, None)  # no usage row, no output
        assert [r.request_id for r in store.since("chat", NOW - timedelta(days=30), limit=1)] == ["req_3"]
        assert store.prune(NOW - timedelta(days=7)) == 1
        assert store.prune(NOW - timedelta(days=7)) == 0
        assert [r.request_id for r in store.since("chat", NOW - timedelta(days=30))] == ["req_2", "req_1"]
    finally:
        engine.dispose()
