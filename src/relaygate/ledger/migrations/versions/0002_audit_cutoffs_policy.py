"""Audit log, cutoff registry, and the policy facts on usage rows.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Adds the tables ``audit_events`` (hash chain), ``cutoffs`` (history kept; at most one open row per
(provider, region)) and ``cutoff_version`` (one row, bumped on every cutoff change), and four
nullable columns to ``usage``: ``tenant_region``, ``data_class``, ``pii_entities`` (JSON list of
entity types) and ``policy`` (JSON decision). Existing rows keep their data (NULL in the new
columns). Spelled out rather than imported from ``schema.py``, as in 0001.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "cleared_at IS NULL"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # SQLite can ADD COLUMN in place; batch mode only rebuilds a table when it must.
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("tenant_region", sa.String(), nullable=True))
        batch.add_column(sa.Column("data_class", sa.String(), nullable=True))
        batch.add_column(sa.Column("pii_entities", _json(), nullable=True))
        batch.add_column(sa.Column("policy", _json(), nullable=True))

    op.create_table(
        "audit_events",
        sa.Column("id", _id(), primary_key=True, autoincrement=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),  # json, not jsonb: read back as hashed
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_events_ts", "audit_events", ["ts"])
    op.create_index("ix_audit_events_kind", "audit_events", ["kind"])

    op.create_table(
        "cutoffs",
        sa.Column("id", _id(), primary_key=True),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_successes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.String(128), nullable=True),
        sa.Column("clear_reason", sa.String(), nullable=True),
    )
    op.create_index(
        "ux_cutoffs_open_pair",
        "cutoffs",
        ["provider", "region"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )

    version = op.create_table(
        "cutoff_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("cutoff_version")
    op.drop_index("ux_cutoffs_open_pair", table_name="cutoffs")
    op.drop_table("cutoffs")
    op.drop_table("audit_events")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("policy")
        batch.drop_column("pii_entities")
        batch.drop_column("data_class")
        batch.drop_column("tenant_region")
