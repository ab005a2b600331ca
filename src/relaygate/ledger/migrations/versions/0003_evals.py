"""Evaluation runs, their per-case results, and the eval response cache.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01

Adds ``eval_runs`` (one row per run id: suite, its hash, targets, judge, status, cost ceiling,
suite margins), ``eval_results`` (one row per (run, case, target), unique, so a resumed run
replaces rather than duplicates) and ``eval_cache`` (responses keyed by the sha256 of the target
and the normalised request). Spelled out rather than imported from ``schema.py``, as in 0001.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("suite", sa.String(), nullable=False),
        sa.Column("suite_hash", sa.String(64), nullable=False),
        sa.Column("targets", _json(), nullable=False),
        sa.Column("judge", sa.String(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cost_ceiling_usd", sa.Float(), nullable=True),
        sa.Column("meta", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "eval_results",
        sa.Column("id", _id(), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("eval_runs.run_id"), nullable=False),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("output", sa.String(), nullable=True),
        sa.Column("scores", _json(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("refused", sa.Boolean(), nullable=True),
        sa.Column("served_by", sa.String(), nullable=True),
        sa.Column("response", _json(), nullable=True),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_eval_results_case", "eval_results", ["run_id", "case_id", "target"], unique=True)
    op.create_table(
        "eval_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("request", _json(), nullable=False),
        sa.Column("response", _json(), nullable=False),
        sa.Column("served_by", sa.String(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_eval_cache_target", "eval_cache", ["target"])


def downgrade() -> None:
    op.drop_index("ix_eval_cache_target", table_name="eval_cache")
    op.drop_table("eval_cache")
    op.drop_index("ux_eval_results_case", table_name="eval_results")
    op.drop_table("eval_results")
    op.drop_table("eval_runs")
