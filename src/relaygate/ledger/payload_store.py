"""Captured request payloads (table ``payloads``) for ``relaygate replay``.

Capture is opt-in per route or tenant (``capture: true`` in the config). The gateway hands each
``PayloadRecord`` to a ``LedgerWriter`` over ``PayloadStore`` (via ``PayloadSink``), so rows are
written in batches off the request path; ``prune`` deletes rows past the retention period.
Sync methods (SQLAlchemy Core); times are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from relaygate.ledger.db import transaction
from relaygate.ledger.schema import payloads, usage

__all__ = ["PayloadRecord", "PayloadSink", "PayloadStore"]

_COLUMNS = (
    "request_id",
    "ts",
    "tenant",
    "tenant_region",
    "data_class",
    "route",
    "endpoint",
    "request",
    "output",
    "served_deployment",
)


@dataclass(slots=True)
class PayloadRecord:
    """One captured request: ``request`` is the OpenAI-shaped chat body the gateway routed (for
    ``/v1/messages`` the translated body), ``output`` the answer's text (None for streams).
    ``latency_ms`` / ``cost_usd`` are not stored here: ``since`` reads them from the usage row."""

    request_id: str
    ts: datetime
    route: str
    endpoint: str
    request: dict[str, Any]
    tenant: str | None = None
    tenant_region: str | None = None
    data_class: str | None = None
    output: str | None = None
    served_deployment: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None


class PayloadStore:
    """Reads and writes the ``payloads`` table through ``engine`` (owned by the caller)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def insert(self, rows: Sequence[PayloadRecord]) -> None:
        """Insert ``rows`` in one transaction. Raises ``StorageError``."""
        if not rows:
            return
        values = [{c: getattr(r, c) for c in _COLUMNS} for r in rows]
        with transaction(self._engine, write=True) as conn:
            conn.execute(payloads.insert(), values)

    def since(self, route: str, since: datetime, *, limit: int | None = None) -> list[PayloadRecord]:
        """Route ``route``'s payloads with ``ts >= since``, oldest first, each with the latency
        (ms) and cost (USD) of its usage row when there is one."""
        stmt = (
            sa.select(*(payloads.c[c] for c in _COLUMNS), usage.c.latency_ms, usage.c.cost_usd)
            .select_from(payloads.outerjoin(usage, usage.c.request_id == payloads.c.request_id))
            .where(payloads.c.route == route, payloads.c.ts >= since)
            .order_by(payloads.c.ts, payloads.c.request_id)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        with transaction(self._engine) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [PayloadRecord(**dict(row)) for row in rows]

    def prune(self, older_than: datetime) -> int:
        """Delete payloads with ``ts < older_than``; returns how many."""
        with transaction(self._engine, write=True) as conn:
            result = conn.execute(payloads.delete().where(payloads.c.ts < older_than))
        return int(result.rowcount or 0)


class PayloadSink:
    """``PayloadStore`` seen as a ``LedgerWriter`` sink (the writer calls ``insert_usage``)."""

    def __init__(self, store: PayloadStore) -> None:
        self.store = store

    def insert_usage(self, rows: Sequence[PayloadRecord]) -> None:
        self.store.insert(rows)
