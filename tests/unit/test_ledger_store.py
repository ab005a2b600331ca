"""Schema, migrations, UsageStore and KeyStore against SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from relaygate.ledger.db import StorageError, create_db_engine, default_db_url, resolve_db_url
from relaygate.ledger.key_store import KeyStore
from relaygate.ledger.migrate import head_revision, migrate, open_database
from relaygate.ledger.records import AttemptRecord, UsageRecord
from relaygate.ledger.schema import metadata
from relaygate.ledger.usage_store import UsageStore

NOW = datetime.now(UTC).replace(microsecond=0)


def record(i: int = 0, **overrides: object) -> UsageRecord:
    fields: dict[str, object] = {
        "request_id": f"req-{i}",
        "ts": NOW,
        "endpoint": "/v1/chat/completions",
        "status": 200,
        "tenant": "acme",
        "key_id": "key_00000001",
        "route": "gpt-4o",
        "served_deployment": "openai-gpt-4o",
        "served_provider": "openai",
        "attempts": [AttemptRecord("openai-gpt-4o", "openai", 200, None, 120.5)],
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost_usd": 0.0005,
        "latency_ms": 150.0,
        "ttft_ms": 40.0,
    }
    fields.update(overrides)
    return UsageRecord(**fields)  # type: ignore[arg-type]


def test_migrate_creates_tables_at_head_and_is_idempotent(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)
    eng = create_db_engine(db_url)
    try:
        with eng.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        eng.dispose()
    assert {"tenants", "virtual_keys", "usage", "alembic_version"} <= tables
    assert version == head_revision()


def test_migrated_database_matches_schema_module(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_sqlite_file_uses_wal_and_parent_dirs_are_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/relaygate.db"
    eng = open_database(url)
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "nonsense://x", "sqlite+nodriver:///x.db"]
)
def test_unusable_urls_raise_storage_error(url: str) -> None:
    with pytest.raises(StorageError) as info:
        create_db_engine(url)
    assert info.value.transient is False


def test_default_db_url_resolution(tmp_path: Path) -> None:
    assert default_db_url({"RELAYGATE_DB_URL": "postgresql+psycopg://x/y"}) == "postgresql+psycopg://x/y"
    assert default_db_url({"RELAYGATE_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path}/relaygate.db"
    assert default_db_url({}).endswith("/.relaygate/relaygate.db")
    assert "~" not in default_db_url({})
    assert resolve_db_url("sqlite:///x.db", {"RELAYGATE_DB_URL": "other"}) == "sqlite:///x.db"
    assert resolve_db_url(None, {"RELAYGATE_DB_URL": "other"}) == "other"


def test_usage_round_trip(engine: sa.Engine) -> None:
    store = UsageStore(engine)
    original = record(
        1,
        stream=True,
        complete=False,
        finish_reason=None,
        error_code="stream_cut",
        cached_tokens=64,
        attempts=[
            AttemptRecord("a-dep", "a", 429, "rate_limited", 10.0),
            AttemptRecord("b-dep", "b", None, "timeout", 3000.0),
        ],
        ts=datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
    )
    store.insert_usage([original])
    store.insert_usage([])
    assert store.count_usage() == 1
    (back,) = store.list_usage(10)
    assert back == original
    assert back.ts.tzinfo is not None


def test_sqlite_batch_insert_stores_what_sqlalchemys_insert_stores(tmp_path: Path) -> None:
    # UsageStore writes SQLite batches as driver SQL with the columns' bind processors; the stored
    # values must be the very ones SQLAlchemy's compiled insert writes, NULLs and JSON included.
    from relaygate.ledger.schema import usage
    from relaygate.ledger.usage_store import _to_row

    rows = [
        record(0),
        record(1, ts=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), stream=True, complete=False),
        record(2, pii_entities=["EMAIL"], policy={"allowed": ["a"], "n": 1}, cache="hit", key_id=None),
        record(3, attempts=[], prompt_tokens=None, cost_usd=None, ttft_ms=None, status=502),
        record(  # NUL in text, in JSON keys and values: cleaned the same way on both paths
            4,
            route="gpt\x00x",
            pii_entities=["E\x00"],
            policy={"a\x00": ["b\x00"], "plain\\u0000": 1},
            attempts=[AttemptRecord("d\x00", "p", None, "timeout", 1.0)],
        ),
        record(5, policy={True: 1, None: 2, ("a", "b"): 3}),  # non-str keys: str() as on PostgreSQL
    ] + [record(i) for i in range(6, 300)]  # over one statement's 128 rows
    ours = open_database(f"sqlite:///{tmp_path}/ours.db")
    theirs = open_database(f"sqlite:///{tmp_path}/theirs.db")
    UsageStore(ours).insert_usage(rows)
    with theirs.begin() as conn:
        conn.execute(usage.insert(), [_to_row(r) for r in rows])

    def raw(engine: sa.Engine) -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM usage ORDER BY id")]

    assert raw(ours) == raw(theirs)
    assert len(raw(ours)) == 300
    assert UsageStore(ours).list_usage(300)[-3].pii_entities == ["EMAIL"]


def test_sqlite_batches_use_few_statement_shapes(tmp_path: Path) -> None:
    # Each distinct INSERT text stays in sqlite3's per-connection statement cache: one text per
    # batch size (1..128) grew RSS by 26 MB over a soak. Power-of-two chunks keep it to eight.
    store = UsageStore(open_database(f"sqlite:///{tmp_path}/l.db"))
    total = 0
    for n in range(1, 131):
        store.insert_usage([record(i) for i in range(n)])
        total += n
    assert store.count_usage() == total
    assert store._sqlite is not None and len(store._sqlite._sql) <= 8


def test_non_utc_and_naive_times_are_stored_as_utc(engine: sa.Engine) -> None:
    store = UsageStore(engine)
    plus2 = timezone(timedelta(hours=2))
    store.insert_usage(
        [record(1, ts=datetime(2025, 1, 1, 14, 0, tzinfo=plus2)), record(2, ts=datetime(2025, 1, 1))]
    )
    newest, oldest = store.list_usage(2)
    assert oldest.ts == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert newest.ts == datetime(2025, 1, 1, 0, 0, tzinfo=UTC)


def test_nul_characters_do_not_poison_a_row(engine: sa.Engine) -> None:
    store = UsageStore(engine)
    store.insert_usage([record(1, route="gpt\x00evil", policy={"k\x00": "v\x00", "ok": "a\\u0000"})])
    back = store.list_usage(1)[0]
    assert back.route == "gpt\ufffdevil"
    # a real NUL is replaced; the six characters backslash-u-0-0-0-0 are kept as written
    assert back.policy == {"k\ufffd": "v\ufffd", "ok": "a\\u0000"}


def test_query_usage_aggregates_by_each_dimension(engine: sa.Engine) -> None:
    store = UsageStore(engine)
    rows = [
        record(1),
        record(
            2,
            status=502,
            error_code="all_candidates_failed",
            prompt_tokens=None,
            completion_tokens=None,
            cost_usd=None,
            served_deployment=None,
            latency_ms=50.0,
        ),
        record(
            3,
            tenant="beta",
            route="claude",
            served_deployment="anthropic-sonnet",
            cost_usd=0.25,
            latency_ms=300.0,
        ),
        record(4, tenant="beta", complete=False, stream=True, latency_ms=None),
        record(
            5,
            tenant=None,
            status=401,
            route=None,
            served_deployment=None,
            prompt_tokens=None,
            completion_tokens=None,
            cost_usd=None,
            latency_ms=1.0,
        ),
        record(6, ts=NOW - timedelta(days=2), cost_usd=100.0),  # outside the window
    ]
    store.insert_usage(rows)
    since = NOW - timedelta(hours=1)

    by_tenant = {r["key"]: r for r in store.query_usage(since, "tenant")}
    assert set(by_tenant) == {"acme", "beta", None}
    acme = by_tenant["acme"]
    assert [acme[k] for k in ("requests", "errors", "prompt_tokens", "completion_tokens")] == [2, 1, 100, 20]
    assert acme["cost_usd"] == pytest.approx(0.0005)
    assert acme["avg_latency_ms"] == pytest.approx(100.0)
    beta = by_tenant["beta"]
    assert (beta["requests"], beta["errors"]) == (2, 1)  # the incomplete stream counts as an error
    assert beta["cost_usd"] == pytest.approx(0.2505)
    assert beta["avg_latency_ms"] == pytest.approx(300.0)  # rows without latency are not averaged
    assert by_tenant[None]["errors"] == 1

    by_route = {r["key"]: r["requests"] for r in store.query_usage(since, "route")}
    assert by_route == {"gpt-4o": 3, "claude": 1, None: 1}
    by_dep = {r["key"]: r["requests"] for r in store.query_usage(since, "deployment")}
    assert by_dep == {"openai-gpt-4o": 2, "anthropic-sonnet": 1, None: 2}
    # naive `since` means UTC; an old window includes the old row
    old = store.query_usage((NOW - timedelta(days=3)).replace(tzinfo=None), "tenant")
    assert sum(r["requests"] for r in old) == 6
    assert store.query_usage(NOW + timedelta(minutes=1), "tenant") == []


def test_query_usage_rejects_unknown_grouping(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="tenant, route, deployment"):
        UsageStore(engine).query_usage(NOW, "model")  # type: ignore[arg-type]


def test_refused_row_raises_non_transient_storage_error(engine: sa.Engine) -> None:
    store = UsageStore(engine)
    with pytest.raises(StorageError) as info:
        store.insert_usage([record(1), record(2, endpoint=None)])
    assert info.value.transient is False
    assert info.value.conflict is True
    assert isinstance(info.value.__cause__, sa.exc.IntegrityError)
    assert store.count_usage() == 0  # all or nothing


def test_missing_table_is_a_transient_storage_error(db_url: str) -> None:
    eng = create_db_engine(db_url)  # not migrated
    try:
        with pytest.raises(StorageError) as info:
            UsageStore(eng).insert_usage([record(1)])
        assert info.value.transient is True
    finally:
        eng.dispose()


def test_keys_create_lookup_revoke(engine: sa.Engine) -> None:
    keys = KeyStore(engine)
    key_id, plaintext = keys.create_key("acme", "EU")
    info = keys.lookup(plaintext)
    assert info is not None
    assert (info.key_id, info.tenant, info.region) == (key_id, "acme", "EU")

    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT key_hash, key_prefix FROM virtual_keys")).one()
    assert stored.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert stored.key_prefix == plaintext[:8]

    second_id, second = keys.create_key("acme")  # region None keeps the tenant's region
    assert keys.list_tenants()[0].region == "EU"
    keys.create_key("acme", "US")  # a given region updates it
    assert [(t.name, t.region) for t in keys.list_tenants()] == [("acme", "US")]
    keys.create_key("beta")

    assert keys.revoke(key_id) is True
    assert keys.revoke(key_id) is False
    assert keys.revoke("key_unknown") is False
    assert keys.lookup(plaintext) is None
    assert keys.lookup(second) is not None

    listed = keys.list_keys("acme")
    assert [k.key_id for k in listed][:2] == [key_id, second_id]
    assert listed[0].revoked_at is not None and listed[1].revoked_at is None
    assert all(k.region == "US" for k in listed)
    assert len(keys.list_keys()) == 4
    assert [t.name for t in keys.list_tenants()] == ["acme", "beta"]


async def test_alookup(engine: sa.Engine) -> None:
    keys = KeyStore(engine)
    key_id, plaintext = keys.create_key("acme", "CN")
    info = await keys.alookup(plaintext)
    assert info is not None and info.key_id == key_id and info.region == "CN"
    assert await keys.alookup(plaintext + "x") is None
