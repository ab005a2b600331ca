"""Eval quality published per (route, deployment, suite); judge spend per eval run.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Adds ``deployment_quality``: what ``relaygate eval publish`` writes (the suite's main metric with
its mean, CI and n, the run's verdict against the route's incumbent, the run id and time) and the
gateway reads at start-up and on reload for the ``cheapest_non_inferior`` strategy. One row per
(route, deployment, suite): publishing again replaces it. Adds ``eval_runs.judge_spent_usd``: what
the run's LLM-judge calls cost, so a resumed run's cost ceiling counts the judge spend of its
earlier, killed sessions (answers' costs are in ``eval_results``). Spelled out rather than
imported from ``schema.py``, as in 0001.

Revises 0005 (the response-cache column on ``usage``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment_quality",
        sa.Column("route", sa.String(), primary_key=True),
        sa.Column("deployment", sa.String(), primary_key=True),
        sa.Column("suite", sa.String(), primary_key=True),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("incumbent", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(sa.Column("judge_spent_usd", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_column("judge_spent_usd")
    op.drop_table("deployment_quality")
