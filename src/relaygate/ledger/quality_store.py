"""Published eval quality in the database: one ``deployment_quality`` row per (route, deployment,
suite), written by ``relaygate eval publish`` and read by the gateway when it builds its runtime
(start-up and every reload), so newly published quality takes effect on the next ``SIGHUP`` /
``POST /admin/reload`` without a restart.

Publishing replaces the rows of the same keys and writes one ``quality.publish`` audit event in the
same transaction (actor, route, run id, and the records' deployment, suite and verdict).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from relaygate.config.quality_schema import PublishedQuality, QualityScore
from relaygate.ledger.audit import append_event, lock_chain
from relaygate.ledger.db import transaction
from relaygate.ledger.schema import deployment_quality

__all__ = ["QualityStore"]

_SCORE_FIELDS = ("metric", "mean", "ci_low", "ci_high", "n", "verdict", "incumbent", "run_id")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class QualityStore:
    """The ``deployment_quality`` table behind ``engine`` (owned by the caller). Methods block
    (``aall`` runs ``all`` in a worker thread); all raise ``StorageError`` when the database fails."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self._clock = clock

    def publish(self, records: Iterable[PublishedQuality], *, actor: str) -> list[PublishedQuality]:
        """Insert or replace each record (key: route, deployment, suite); ``published_at`` is set
        to now when the record has none. Returns the records as stored."""
        now = self._clock()
        stored = [
            PublishedQuality(
                r.route,
                r.deployment,
                r.suite,
                r.score if r.score.published_at else r.score.model_copy(update={"published_at": now}),
            )
            for r in records
        ]
        if not stored:
            return []
        with transaction(self.engine, write=True) as conn:
            lock_chain(conn)
            for r in stored:
                conn.execute(sa.delete(deployment_quality).where(_key(r.route, r.deployment, r.suite)))
                conn.execute(deployment_quality.insert(), _row(r))
            details = {
                "run_ids": sorted({r.score.run_id or "" for r in stored}),
                "records": [
                    {"deployment": r.deployment, "suite": r.suite, "verdict": r.score.verdict} for r in stored
                ],
            }
            routes = sorted({r.route for r in stored})
            append_event(conn, "quality.publish", actor, ",".join(routes), details, now=now)
        return stored

    def all(self, route: str | None = None) -> list[PublishedQuality]:
        """Every stored record (one route's when given), ordered by route, deployment, suite."""
        t = deployment_quality
        stmt = sa.select(t).order_by(t.c.route, t.c.deployment, t.c.suite)
        if route is not None:
            stmt = stmt.where(t.c.route == route)
        with transaction(self.engine) as conn:
            return [_record(r) for r in conn.execute(stmt).mappings()]

    def delete(self, route: str, deployment: str | None = None, suite: str | None = None) -> int:
        """Remove a route's records (narrowed by deployment and suite); returns how many."""
        t = deployment_quality
        cond = t.c.route == route
        if deployment is not None:
            cond &= t.c.deployment == deployment
        if suite is not None:
            cond &= t.c.suite == suite
        with transaction(self.engine, write=True) as conn:
            return int(conn.execute(sa.delete(t).where(cond)).rowcount or 0)

    async def aall(self, route: str | None = None) -> list[PublishedQuality]:
        return await asyncio.to_thread(self.all, route)


def _key(route: str, deployment: str, suite: str) -> Any:
    t = deployment_quality
    return (t.c.route == route) & (t.c.deployment == deployment) & (t.c.suite == suite)


def _row(r: PublishedQuality) -> dict[str, Any]:
    row: dict[str, Any] = {f: getattr(r.score, f) for f in _SCORE_FIELDS}
    return {**row, "route": r.route, "deployment": r.deployment, "suite": r.suite,
            "published_at": r.score.published_at}  # fmt: skip


def _record(row: Any) -> PublishedQuality:
    score = QualityScore(**{f: row[f] for f in _SCORE_FIELDS}, published_at=row["published_at"])
    return PublishedQuality(row["route"], row["deployment"], row["suite"], score)
