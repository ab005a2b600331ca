"""The response cache's verdict on usage rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Adds one nullable column to ``usage``: ``cache`` (``hit``, ``semantic_hit``, ``miss``, ``skip``;
NULL where the route does not cache, and on every row written before this revision). A hit's
row has no attempts and zero cost. Spelled out rather than imported from ``schema.py``, as in 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite can ADD COLUMN in place; batch mode only rebuilds a table when it must.
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("cache", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("cache")
