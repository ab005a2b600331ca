"""Usage rows in the database: batched inserts from the writer, aggregates for reports.

Sync methods (SQLAlchemy Core); async callers go through ``LedgerWriter`` or ``asyncio.to_thread``.
Units as in ``records.py``: tokens, USD, milliseconds, UTC.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict

import sqlalchemy as sa

from relaygate.ledger.db import transaction
from relaygate.ledger.records import AttemptRecord, UsageRecord
from relaygate.ledger.schema import usage

__all__ = ["GROUP_BY", "GroupBy", "TrafficSummary", "UsageRow", "UsageStore", "UsageSummary"]

GroupBy = Literal["tenant", "route", "deployment"]
GROUP_BY: tuple[GroupBy, ...] = ("tenant", "route", "deployment")
UsageRow = tuple[Any, ...] | dict[str, Any]
"""One usage row as insert parameters (``UsageStore.prepare_row``): driver values on SQLite,
column values elsewhere."""
_GROUP_COLUMNS = {"tenant": "tenant", "route": "route", "deployment": "served_deployment"}
_ATTEMPT_FIELDS = ("deployment", "provider", "status", "error_class", "latency_ms")
_TEXT_FIELDS = (
    "request_id",
    "endpoint",
    "tenant",
    "key_id",
    "route",
    "error_code",
    "served_deployment",
    "served_provider",
    "finish_reason",
    "tenant_region",
    "data_class",
    "cache",
)


class UsageSummary(TypedDict):
    """One aggregated row of ``UsageStore.query_usage``.

    ``key``: the tenant, route or served deployment (None for rows without one, e.g. requests
    refused before routing). ``errors``: requests the client saw fail (status >= 400) plus
    streams that ended incomplete. Token and cost sums treat unreported values as 0;
    ``avg_latency_ms`` / ``avg_ttft_ms`` average the rows that have a value (None if none do).
    """

    key: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    avg_latency_ms: float | None
    avg_ttft_ms: float | None


class TrafficSummary(TypedDict):
    """One aggregated row of ``UsageStore.traffic_by``: the requests of one (route, tenant region,
    data class, tenant, served deployment, served provider), with token and cost sums (unreported
    values count as 0). ``served_*`` are None for requests no deployment answered.
    """

    route: str
    tenant_region: str | None
    data_class: str | None
    tenant: str | None
    served_deployment: str | None
    served_provider: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsageStore:
    """Reads and writes the ``usage`` table through ``engine`` (owned by the caller)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        sqlite = engine.dialect.name == "sqlite"
        self._sqlite: _SQLiteInsert | None = _SQLiteInsert(engine.dialect) if sqlite else None

    def prepare_row(self, record: UsageRecord) -> UsageRow:
        """``record`` as insert parameters: on SQLite a tuple of driver values in column order
        (bind processors applied), elsewhere a dict of column values. About 15 µs of CPU.

        ``LedgerWriter`` calls this on the event loop when a row is submitted, one row at a time,
        so that the writer thread holds the GIL only for the driver call: converting a whole
        batch there (JSON, datetimes, NUL cleaning) held it for milliseconds, and the event loop
        waited each time it gave the GIL up, which set the p99 at concurrency 1
        (bench/flamegraphs/README.md, "Third round"). On SQLite, raises ``TypeError``/``ValueError``
        for a value the column cannot store (e.g. a policy that is not JSON-able); elsewhere such
        a row fails its batch at insert, and the writer then rejects it alone.
        """
        if self._sqlite is not None:
            return self._sqlite.params(record)
        return _to_row(record)

    def insert_prepared(self, rows: Sequence[UsageRow]) -> None:
        """Insert rows made by ``prepare_row`` of this store, in one transaction. All or nothing.

        On SQLite the batch goes as multi-row ``INSERT ... VALUES (...), (...)`` statements of
        128, 64, ... or 1 rows (``_SQLiteInsert``): one ``sqlite3_step`` per statement, so the
        writer thread gives the GIL up once per statement rather than once per row (the sqlite3
        driver's ``executemany`` does it around every row, and while the event loop is busy the
        writer waits a switch interval to get it back each time: bench/ledger_contention.py).
        psycopg's ``executemany`` already pipelines, so PostgreSQL keeps SQLAlchemy's insert
        (https://docs.sqlalchemy.org/en/20/core/connections.html
        #insert-many-values-behavior-for-insert-statements).

        Raises ``StorageError`` (``transient`` says whether retrying may help).
        """
        if not rows:
            return
        with transaction(self._engine, write=True) as conn:
            if self._sqlite is not None:
                self._sqlite.execute(conn, rows)  # type: ignore[arg-type]  # tuples here
            else:
                conn.execute(usage.insert(), rows)  # type: ignore[arg-type]

    def insert_usage(self, rows: Sequence[UsageRecord]) -> None:
        """Insert ``rows`` in one transaction (``prepare_row`` then ``insert_prepared``). All or
        nothing. Raises ``StorageError`` (``transient`` says whether retrying may help), or
        ``TypeError``/``ValueError`` from ``prepare_row``.
        """
        self.insert_prepared([self.prepare_row(record) for record in rows])

    def query_usage(self, since: datetime, by: GroupBy, *, tenant: str | None = None) -> list[UsageSummary]:
        """Aggregate rows with ``ts >= since`` (naive means UTC) grouped ``by`` tenant, route or
        served deployment, most requests first; only ``tenant``'s rows when given. Raises
        ``ValueError`` for another ``by``.
        """
        if by not in _GROUP_COLUMNS:
            raise ValueError(f"by must be one of {', '.join(GROUP_BY)}, not {by!r}")
        key = usage.c[_GROUP_COLUMNS[by]]
        failed = sa.or_(usage.c.status >= 400, sa.not_(usage.c.complete))
        requests = sa.func.count()
        stmt = (
            sa.select(
                key.label("key"),
                requests.label("requests"),
                sa.func.sum(sa.case((failed, 1), else_=0)).label("errors"),
                sa.func.sum(sa.func.coalesce(usage.c.prompt_tokens, 0)).label("prompt_tokens"),
                sa.func.sum(sa.func.coalesce(usage.c.completion_tokens, 0)).label("completion_tokens"),
                sa.func.sum(sa.func.coalesce(usage.c.cached_tokens, 0)).label("cached_tokens"),
                sa.func.sum(sa.func.coalesce(usage.c.cost_usd, 0.0)).label("cost_usd"),
                sa.func.avg(usage.c.latency_ms).label("avg_latency_ms"),
                sa.func.avg(usage.c.ttft_ms).label("avg_ttft_ms"),
            )
            .where(usage.c.ts >= since, *([usage.c.tenant == tenant] if tenant is not None else []))
            .group_by(key)
            .order_by(requests.desc(), key)
        )
        with transaction(self._engine) as conn:
            result = conn.execute(stmt).mappings().all()
        return [_summary(row) for row in result]

    def budget_spend(
        self, tenants: Sequence[str], day_start: datetime, month_start: datetime
    ) -> dict[str, tuple[float, float]]:
        """USD spent per tenant, ``tenant -> (since day_start, since month_start)``, summing
        ``cost_usd`` (unpriced rows count 0) of ``tenants``' rows; tenants without rows are
        absent. One query over ``ix_usage_tenant_ts``; ``day_start >= month_start`` (UTC, naive
        means UTC). The source budgets are seeded from (``relaygate.admission``).
        """
        if not tenants:
            return {}
        cost = sa.func.coalesce(usage.c.cost_usd, 0.0)
        stmt = (
            sa.select(
                usage.c.tenant,
                sa.func.sum(sa.case((usage.c.ts >= day_start, cost), else_=0.0)).label("day"),
                sa.func.sum(cost).label("month"),
            )
            .where(usage.c.tenant.in_(list(tenants)), usage.c.ts >= month_start)
            .group_by(usage.c.tenant)
        )
        with transaction(self._engine) as conn:
            rows = conn.execute(stmt).all()
        return {row[0]: (float(row[1] or 0.0), float(row[2] or 0.0)) for row in rows}

    def traffic_by(self, since: datetime) -> list[TrafficSummary]:
        """Rows with ``ts >= since`` (naive means UTC) and a route, grouped by route, tenant region,
        data class, tenant, served deployment and served provider; sorted by those keys (NULLs
        first). Read-only; used by ``relaygate drill``.
        """
        keys = [
            usage.c.route,
            usage.c.tenant_region,
            usage.c.data_class,
            usage.c.tenant,
            usage.c.served_deployment,
            usage.c.served_provider,
        ]
        stmt = (
            sa.select(
                *keys,
                sa.func.count().label("requests"),
                sa.func.sum(sa.func.coalesce(usage.c.prompt_tokens, 0)).label("prompt_tokens"),
                sa.func.sum(sa.func.coalesce(usage.c.completion_tokens, 0)).label("completion_tokens"),
                sa.func.sum(sa.func.coalesce(usage.c.cost_usd, 0.0)).label("cost_usd"),
            )
            .where(usage.c.ts >= since, usage.c.route.is_not(None))
            .group_by(*keys)
            .order_by(*(k.asc().nulls_first() for k in keys))
        )
        with transaction(self._engine) as conn:
            result = conn.execute(stmt).mappings().all()
        return [
            TrafficSummary(
                route=row["route"],
                tenant_region=row["tenant_region"],
                data_class=row["data_class"],
                tenant=row["tenant"],
                served_deployment=row["served_deployment"],
                served_provider=row["served_provider"],
                requests=int(row["requests"]),
                prompt_tokens=int(row["prompt_tokens"] or 0),
                completion_tokens=int(row["completion_tokens"] or 0),
                cost_usd=float(row["cost_usd"] or 0.0),
            )
            for row in result
        ]

    def count_usage(self) -> int:
        """Number of rows in the table."""
        with transaction(self._engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(usage)).scalar_one())

    def list_usage(self, limit: int = 100) -> list[UsageRecord]:
        """The newest ``limit`` rows (by insertion order), newest first, as records."""
        stmt = sa.select(usage).order_by(usage.c.id.desc()).limit(limit)
        with transaction(self._engine) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [_from_row(row) for row in rows]


def _clean(value: str | None) -> str | None:
    # PostgreSQL refuses NUL in text and jsonb; client-chosen strings (model names) may hold one.
    if value is not None and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _clean_json(value: Any) -> Any:
    """``value`` with NUL replaced in every string and key (JSONB refuses it, as text does)."""
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return value


def _to_row(record: UsageRecord) -> dict[str, Any]:
    row: dict[str, Any] = {name: _clean(getattr(record, name)) for name in _TEXT_FIELDS}
    row.update(
        ts=record.ts,
        status=record.status,
        stream=record.stream,
        attempts=[
            {
                "deployment": _clean(a.deployment),
                "provider": _clean(a.provider),
                "status": a.status,
                "error_class": _clean(a.error_class),
                "latency_ms": a.latency_ms,
            }
            for a in record.attempts
        ],
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cached_tokens=record.cached_tokens,
        cost_usd=record.cost_usd,
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        complete=record.complete,
        pii_entities=None if record.pii_entities is None else [_clean(e) for e in record.pii_entities],
        policy=None if record.policy is None else _clean_json(record.policy),
    )
    return row


_SQLITE_ROWS_PER_STATEMENT = 128  # 128 rows x 25 columns: far below SQLite's 32,766 variables


class _SQLiteInsert:
    """Multi-row ``INSERT INTO usage`` as driver SQL: the statement text is built once per row
    count, and ``params`` passes every value through its column's bind processor for
    ``dialect`` (the same conversion SQLAlchemy's compiled insert applies: UTC datetimes as text,
    JSON as text, booleans as integers), so the stored values are the same
    (tests/unit/test_ledger_store.py).
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        columns = [c for c in usage.columns if c.name != "id"]
        procs = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
        self._pairs = [(c.name, proc) for c, proc in zip(columns, procs, strict=True)]
        self._head = f"INSERT INTO usage ({', '.join(c.name for c in columns)}) VALUES "
        self._one = "(" + ", ".join("?" * len(columns)) + ")"
        self._sql: dict[int, str] = {}

    def params(self, record: UsageRecord) -> tuple[Any, ...]:
        """One row's driver values in column order: ``_to_row`` (the one place that cleans a
        record for storage), bind-processed."""
        row = _to_row(record)
        return tuple(row[name] if proc is None else proc(row[name]) for name, proc in self._pairs)

    def _statement(self, n: int) -> str:
        sql = self._sql.get(n)
        if sql is None:
            sql = self._sql[n] = self._head + ", ".join([self._one] * n)
        return sql

    def execute(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (from ``params``) on ``conn``, inside its transaction."""
        start = 0
        while start < len(rows):
            # Power-of-two row counts only (128, 64, ... 1): each distinct statement stays in
            # sqlite3's per-connection statement cache, and one per row count from 1 to 128 grew
            # RSS by 26 MB (bench/soak); eight shapes keep it flat.
            size = min(_SQLITE_ROWS_PER_STATEMENT, 1 << ((len(rows) - start).bit_length() - 1))
            chunk = rows[start : start + size]
            start += size
            conn.exec_driver_sql(self._statement(len(chunk)), tuple(itertools.chain.from_iterable(chunk)))


def _from_row(row: Any) -> UsageRecord:
    fields = {name: row[name] for name in _TEXT_FIELDS}
    attempts = [AttemptRecord(**{f: a.get(f) for f in _ATTEMPT_FIELDS}) for a in row["attempts"] or []]
    return UsageRecord(
        ts=row["ts"],
        status=row["status"],
        stream=bool(row["stream"]),
        attempts=attempts,
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cached_tokens=row["cached_tokens"],
        cost_usd=row["cost_usd"],
        latency_ms=row["latency_ms"],
        ttft_ms=row["ttft_ms"],
        complete=bool(row["complete"]),
        pii_entities=row["pii_entities"],
        policy=row["policy"],
        **fields,
    )


def _summary(row: Any) -> UsageSummary:
    def avg(value: Any) -> float | None:
        return None if value is None else float(value)  # PostgreSQL returns Decimal

    return UsageSummary(
        key=row["key"],
        requests=int(row["requests"]),
        errors=int(row["errors"] or 0),
        prompt_tokens=int(row["prompt_tokens"] or 0),
        completion_tokens=int(row["completion_tokens"] or 0),
        cached_tokens=int(row["cached_tokens"] or 0),
        cost_usd=float(row["cost_usd"] or 0.0),
        avg_latency_ms=avg(row["avg_latency_ms"]),
        avg_ttft_ms=avg(row["avg_ttft_ms"]),
    )
