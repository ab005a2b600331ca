"""Request payloads kept for replay.

Revision ID: 0004
Revises: 0003
Create Date: 2025-04-01

Adds ``payloads`` (one row per captured request, keyed by the usage row's ``request_id``: who sent
it, the OpenAI-shaped chat body the gateway routed, the answer's text, the serving deployment).
Capture is opt-in per route or tenant; rows are pruned after ``capture.retention_days``.
Spelled out rather than imported from ``schema.py``, as in 0001.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "payloads",
        sa.Column("request_id", sa.String(), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(), nullable=True),
        sa.Column("tenant_region", sa.String(), nullable=True),
        sa.Column("data_class", sa.String(), nullable=True),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("request", _json(), nullable=False),
        sa.Column("output", sa.String(), nullable=True),
        sa.Column("served_deployment", sa.String(), nullable=True),
    )
    op.create_index("ix_payloads_route_ts", "payloads", ["route", "ts"])
    op.create_index("ix_payloads_ts", "payloads", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_payloads_ts", table_name="payloads")
    op.drop_index("ix_payloads_route_ts", table_name="payloads")
    op.drop_table("payloads")
