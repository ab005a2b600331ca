"""Migration 0002 (audit_events, cutoffs, cutoff_version, usage policy columns) upgrades a 0001
database in place on SQLite and (when reachable) PostgreSQL, and the new usage columns round-trip.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from relaygate.ledger.audit import AuditLog
from relaygate.ledger.cutoff_store import CutoffStore
from relaygate.ledger.db import create_db_engine
from relaygate.ledger.migrate import alembic_config, head_revision, migrate, open_database
from relaygate.ledger.records import AttemptRecord, UsageRecord
from relaygate.ledger.schema import metadata
from relaygate.ledger.usage_store import UsageStore

TS = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def run_alembic(url: str, direction: str, revision: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            getattr(command, direction)(config, revision)
    finally:
        engine.dispose()


def current_revision(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def seed_0001(url: str) -> None:
    """A database at 0001 holding a tenant, a key and one usage row, written with plain SQL."""
    run_alembic(url, "upgrade", "0001")
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO tenants (name, region) VALUES ('acme', 'EU')"))
            conn.execute(
                sa.text(
                    "INSERT INTO virtual_keys (id, tenant, key_hash, key_prefix) "
                    "VALUES ('key_00000001', 'acme', :h, 'rg-abcde')"
                ),
                {"h": "a" * 64},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO usage (request_id, ts, endpoint, status, tenant, stream, attempts, "
                    "prompt_tokens, complete) VALUES ('req-old', :ts, '/v1/chat/completions', 200, "
                    "'acme', :f, :attempts, 42, :t)"
                ),
                {
                    "ts": TS.replace(tzinfo=None) if url.startswith("sqlite") else TS,
                    "f": False,
                    "t": True,
                    "attempts": '[{"deployment": "d", "provider": "p", "status": 200, '
                    '"error_class": null, "latency_ms": 5.0}]',
                },
            )
        assert current_revision(engine) == "0001"
    finally:
        engine.dispose()


def test_upgrade_from_0001_keeps_existing_rows(db_url: str) -> None:
    seed_0001(db_url)
    engine = open_database(db_url)  # what the CLI and the gateway do at start
    try:
        assert current_revision(engine) == head_revision()
        (old,) = UsageStore(engine).list_usage(10)
        assert (old.request_id, old.tenant, old.prompt_tokens, old.ts) == ("req-old", "acme", 42, TS)
        assert old.attempts == [AttemptRecord("d", "p", 200, None, 5.0)]
        assert (old.tenant_region, old.data_class, old.pii_entities, old.policy) == (None, None, None, None)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM virtual_keys")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM usage WHERE policy IS NULL")).scalar_one() == 1
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert CutoffStore(engine).version() == 0
        assert AuditLog(engine).verify().ok
        CutoffStore(engine).set("openai", "CN", "r", actor="cli:test")
        assert AuditLog(engine).verify().checked == 1
    finally:
        engine.dispose()


def test_downgrade_to_0001_and_back(db_url: str) -> None:
    seed_0001(db_url)
    migrate(db_url)
    run_alembic(db_url, "downgrade", "0001")
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            assert not {"audit_events", "cutoffs", "cutoff_version"} & set(inspector.get_table_names())
            assert "policy" not in {c["name"] for c in inspector.get_columns("usage")}
            assert conn.execute(sa.text("SELECT request_id FROM usage")).scalar_one() == "req-old"
    finally:
        engine.dispose()
    migrate(db_url)
    engine = open_database(db_url)
    try:
        assert UsageStore(engine).count_usage() == 1 and CutoffStore(engine).version() == 0
    finally:
        engine.dispose()


def test_policy_columns_round_trip(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store = UsageStore(engine)
        decision = {
            "allowed": ["azure-eu-gpt-4o"],
            "excluded": [{"deployment": "openai-gpt-4o", "rule": 2, "reason": "jurisdiction US not in EU"}],
            "code": "policy_region\x00",
        }
        full = UsageRecord(
            request_id="req-1",
            ts=TS,
            endpoint="/v1/chat/completions",
            status=200,
            tenant_region="EU",
            data_class="personal",
            pii_entities=["EMAIL_ADDRESS", "PHONE_NUMBER"],
            policy=decision,
        )
        bare = UsageRecord(request_id="req-2", ts=TS, endpoint="/v1/chat/completions", status=200)
        store.insert_usage([full, bare])
        newest, oldest = store.list_usage(2)
        assert newest == bare
        assert (oldest.tenant_region, oldest.data_class) == ("EU", "personal")
        assert oldest.pii_entities == ["EMAIL_ADDRESS", "PHONE_NUMBER"]
        assert oldest.policy == {**decision, "code": "policy_region\ufffd"}  # NUL cleaned for PostgreSQL
        with engine.connect() as conn:
            nulls = conn.execute(
                sa.text("SELECT count(*) FROM usage WHERE pii_entities IS NULL AND policy IS NULL")
            ).scalar_one()
        assert nulls == 1  # None is SQL NULL, not JSON null
    finally:
        engine.dispose()
