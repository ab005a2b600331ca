"""Table declarations for tenants, virtual keys, usage rows, audit events, cutoffs, eval runs and
published eval quality (SQLAlchemy Core).

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

__all__ = [
    "UTCDateTime",
    "audit_events",
    "cutoff_version",
    "cutoffs",
    "deployment_quality",
    "eval_cache",
    "eval_results",
    "eval_runs",
    "metadata",
    "payloads",
    "tenants",
    "usage",
    "virtual_keys",
]


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


def _nullable_json() -> sa.types.TypeEngine[Any]:
    # Python None becomes SQL NULL (not the JSON value null), so ``IS NULL`` finds unset rows.
    return sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


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
    # Added by 0002: the facts policy saw and the decision it took (entity types, never values).
    sa.Column("tenant_region", sa.String(), nullable=True),
    sa.Column("data_class", sa.String(), nullable=True),
    sa.Column("pii_entities", _nullable_json(), nullable=True),
    sa.Column("policy", _nullable_json(), nullable=True),
    # Added by 0005: the response cache's verdict (hit, semantic_hit, miss, skip; NULL: not cached).
    sa.Column("cache", sa.String(16), nullable=True),
    sa.Index("ix_usage_ts", "ts"),
    sa.Index("ix_usage_tenant_ts", "tenant", "ts"),
    sa.Index("ix_usage_route_ts", "route", "ts"),
    sa.Index("ix_usage_request_id", "request_id"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    # Assigned by the appender (last id + 1) because the id is part of the hashed content.
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False
    ),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(), nullable=False),
    # Plain JSON, not JSONB: PostgreSQL keeps the text as written, so what was hashed reads back
    # unchanged (JSONB rewrites numbers such as 1e300 and would break verification).
    sa.Column("details", sa.JSON(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_events_ts", "ts"),
    sa.Index("ix_audit_events_kind", "kind"),
)

_ACTIVE = "cleared_at IS NULL"

cutoffs = sa.Table(
    "cutoffs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),  # upper case; "*" = every region
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # "operator" | "detected"
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("probe_successes", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_probe_at", UTCDateTime(), nullable=True),
    sa.Column("cleared_at", UTCDateTime(), nullable=True),  # history is kept: cleared, never deleted
    sa.Column("cleared_by", sa.String(128), nullable=True),
    sa.Column("clear_reason", sa.String(), nullable=True),
    # At most one open row per pair, even with two writers racing.
    sa.Index(
        "ux_cutoffs_open_pair",
        "provider",
        "region",
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    ),
)

cutoff_version = sa.Table(
    "cutoff_version",
    metadata,
    # One row (id = 1), bumped in the same transaction as every change to ``cutoffs``.
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
)

# Added by 0003: evaluation runs (``relaygate.evals.store``) and the eval response cache
# (``relaygate.evals.cache``).
eval_runs = sa.Table(
    "eval_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("suite", sa.String(), nullable=False),
    # sha256 of the cases and graders: a resumed run refuses a suite that changed.
    sa.Column("suite_hash", sa.String(64), nullable=False),
    sa.Column("targets", _json(), nullable=False),
    sa.Column("judge", sa.String(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("cost_ceiling_usd", sa.Float(), nullable=True),
    sa.Column("meta", _json(), nullable=False),  # margins, alpha, power, source of the suite
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Added by 0006: USD the run's judge calls cost, over every session (a resume keeps counting).
    sa.Column("judge_spent_usd", sa.Float(), nullable=False, server_default="0"),
)

eval_results = sa.Table(
    "eval_results",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
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
    sa.Column("response", _nullable_json(), nullable=True),
    sa.Column("cached", sa.Boolean(), nullable=False),
    sa.Column("tags", _json(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # One result per (run, case, target): a resumed run replaces, never duplicates.
    sa.Index("ux_eval_results_case", "run_id", "case_id", "target", unique=True),
)

eval_cache = sa.Table(
    "eval_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # sha256 of (target, normalised request)
    sa.Column("target", sa.String(), nullable=False),
    sa.Column("request", _json(), nullable=False),
    sa.Column("response", _json(), nullable=False),
    sa.Column("served_by", sa.String(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("cost_usd", sa.Float(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_eval_cache_target", "target"),
)

# Added by 0004: request payloads kept for ``relaygate replay`` (opt-in per route or tenant,
# pruned after ``capture.retention_days``); ``request_id`` is the usage row's.
payloads = sa.Table(
    "payloads",
    metadata,
    sa.Column("request_id", sa.String(), primary_key=True),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("tenant", sa.String(), nullable=True),
    sa.Column("tenant_region", sa.String(), nullable=True),
    sa.Column("data_class", sa.String(), nullable=True),
    sa.Column("route", sa.String(), nullable=False),
    sa.Column("endpoint", sa.String(), nullable=False),
    sa.Column("request", _json(), nullable=False),  # the OpenAI-shaped chat body that was routed
    sa.Column("output", sa.String(), nullable=True),  # the answer's text; None for streams
    sa.Column("served_deployment", sa.String(), nullable=True),
    sa.Index("ix_payloads_route_ts", "route", "ts"),
    sa.Index("ix_payloads_ts", "ts"),
)

# Added by 0006: eval quality published per (route, deployment, suite) by ``relaygate eval
# publish``, read by the gateway at start-up and on reload (``relaygate.ledger.quality_store``).
deployment_quality = sa.Table(
    "deployment_quality",
    metadata,
    sa.Column("route", sa.String(), primary_key=True),
    sa.Column("deployment", sa.String(), primary_key=True),
    sa.Column("suite", sa.String(), primary_key=True),
    sa.Column("metric", sa.String(), nullable=False),
    sa.Column("mean", sa.Float(), nullable=False),
    sa.Column("ci_low", sa.Float(), nullable=True),
    sa.Column("ci_high", sa.Float(), nullable=True),
    sa.Column("n", sa.Integer(), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),  # PASS | FAIL | INCONCLUSIVE | INCUMBENT
    sa.Column("incumbent", sa.String(), nullable=False),  # deployment id the verdict compared against
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("published_at", UTCDateTime(), nullable=False),
)
