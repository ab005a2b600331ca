"""Table declarations for tenants, virtual keys and usage rows (SQLAlchemy Core).

These declarations describe the head revision of ``migrations/``; the migrations, not
``metadata.create_all``, create and change the tables (``tests/unit/test_ledger_store.py`` checks
that both agree). Times are stored as UTC: ``UTCDateTime`` normalises on the way in and returns
aware UTC datetimes on the way out on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["UTCDateTime", "metadata", "tenants", "usage", "virtual_keys"]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always stores and returns UTC.

    Naive input is taken as UTC. SQLite has no time zones, so the value is stored as naive UTC
    text (which sorts correctly); PostgreSQL gets an aware value for its ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


metadata = sa.MetaData()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("region", sa.String(32), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.current_timestamp()),
)

virtual_keys = sa.Table(
    "virtual_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(128), sa.ForeignKey("tenants.name"), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index("ix_virtual_keys_tenant", "tenant"),
)

usage = sa.Table(
    "usage",
    metadata,
    # INTEGER on SQLite so the column aliases the rowid; BIGINT elsewhere.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("endpoint", sa.String(), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("tenant", sa.String(), nullable=True),
    sa.Column("key_id", sa.String(), nullable=True),
    sa.Column("route", sa.String(), nullable=True),
    sa.Column("stream", sa.Boolean(), nullable=False),
    sa.Column("error_code", sa.String(), nullable=True),
    sa.Column("served_deployment", sa.String(), nullable=True),
    sa.Column("served_provider", sa.String(), nullable=True),
    sa.Column("attempts", _json(), nullable=False),
    sa.Column("prompt_tokens", sa.Integer(), nullable=True),
    sa.Column("completion_tokens", sa.Integer(), nullable=True),
    sa.Column("cached_tokens", sa.Integer(), nullable=True),
    sa.Column("cost_usd", sa.Float(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("ttft_ms", sa.Float(), nullable=True),
    sa.Column("complete", sa.Boolean(), nullable=False),
    sa.Column("finish_reason", sa.String(), nullable=True),
    sa.Index("ix_usage_ts", "ts"),
    sa.Index("ix_usage_tenant_ts", "tenant", "ts"),
    sa.Index("ix_usage_route_ts", "route", "ts"),
    sa.Index("ix_usage_request_id", "request_id"),
)
