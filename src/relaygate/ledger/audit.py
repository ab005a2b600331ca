"""Audit log: append-only, hash-chained events for admin actions, config reloads and cutoffs.

Event ``n`` stores ``prev_hash`` (event ``n-1``'s ``hash``; 64 zeros for event 1) and ``hash`` =
SHA-256 hex of the canonical encoding of (id, ts, kind, actor, subject, details, prev_hash):
sorted-key compact ASCII JSON, ``ts`` as ISO-8601 UTC with microseconds (``event_hash``). Ids run
1, 2, 3... with no gaps. ``AuditLog.verify`` names the first event that breaks any of this, so an
edited, removed, reordered or renumbered event is found.

What a chain cannot show on its own: events removed from the end, or every event from some point
on rewritten with fresh hashes. Anchor it by keeping the head hash that ``verify`` returns (and
``relaygate audit verify`` prints) outside the database.

Appends from several processes (CLI and gateways) are serialised: SQLite by ``BEGIN IMMEDIATE``
(``transaction(write=True)``), PostgreSQL by ``LOCK TABLE audit_events IN EXCLUSIVE MODE``
(readers are not blocked). Kinds in use: ``cutoff.set``, ``cutoff.detected``, ``cutoff.clear``,
``cutoff.expired``, ``key.create``, ``key.revoke``, ``key.rotate``, ``tenant.upsert``,
``config.reload``, ``config.reload_rejected``.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from relaygate.ledger.db import transaction
from relaygate.ledger.schema import audit_events

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "AuditLog",
    "VerifyResult",
    "append_event",
    "event_hash",
    "lock_chain",
]

GENESIS_HASH = "0" * 64
_MAX_KIND_CHARS = 64
_MAX_ACTOR_CHARS = 128
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One stored event; ``details`` is a JSON object, ``ts`` aware UTC."""

    id: int
    ts: datetime
    kind: str
    actor: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of ``AuditLog.verify``.

    ``checked``: events read (on failure, up to and including the one that showed the break).
    ``first_bad_id``: the first event that is edited, missing or out of place; ``problem`` says how.
    ``head_hash``: the newest event's hash when ``ok`` (None for an empty log): keep it elsewhere
    to detect later truncation.
    """

    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None
    head_hash: str | None = None


def event_hash(
    id: int,
    ts: datetime,
    kind: str,
    actor: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 hex of the canonical encoding (see the module docstring). Raises ``ValueError``
    if ``details`` holds something JSON cannot encode (NaN, a set, a datetime).
    """
    canonical = json.dumps(
        {
            "id": id,
            "ts": ts.astimezone(UTC).isoformat(timespec="microseconds"),
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "details": details,
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def append_event(
    conn: sa.Connection,
    kind: str,
    actor: str,
    subject: str,
    details: Mapping[str, Any] | None,
    *,
    now: datetime,
) -> AuditEvent:
    """Append one event inside the caller's transaction, so it commits (or not) with the change
    it records. ``conn`` must come from ``transaction(engine, write=True)`` (on SQLite that holds
    the write lock; on PostgreSQL this takes the table lock, held until the transaction ends).

    Raises ``ValueError`` for an empty or over-long kind/actor, or details that are not a JSON
    object; ``StorageError`` (from the enclosing ``transaction``) if the database fails.
    """
    kind, actor, subject = _text(kind), _text(actor), _text(subject)
    if not kind or len(kind) > _MAX_KIND_CHARS:
        raise ValueError(f"kind must be 1-{_MAX_KIND_CHARS} characters")
    if not actor or len(actor) > _MAX_ACTOR_CHARS:
        raise ValueError(f"actor must be 1-{_MAX_ACTOR_CHARS} characters")
    body = _json_object(details)
    lock_chain(conn)
    last = conn.execute(
        sa.select(audit_events.c.id, audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1)
    ).first()
    event_id, prev_hash = (1, GENESIS_HASH) if last is None else (last.id + 1, last.hash)
    ts = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    digest = event_hash(event_id, ts, kind, actor, subject, body, prev_hash)
    event = AuditEvent(event_id, ts, kind, actor, subject, body, prev_hash, digest)
    conn.execute(audit_events.insert().values(**_row(event)))
    return event


def lock_chain(conn: sa.Connection) -> None:
    """Take the append lock for the rest of ``conn``'s transaction (PostgreSQL: a table lock that
    readers pass; SQLite: nothing, ``BEGIN IMMEDIATE`` already holds the write lock). Callers that
    read state and then append (the cutoff store) take it first, so their read cannot go stale and
    every writer takes the locks in the same order. Taking it again is harmless.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("LOCK TABLE audit_events IN EXCLUSIVE MODE"))


class AuditLog:
    """The ``audit_events`` table behind ``engine`` (owned by the caller).

    Sync methods block; from an event loop use the ``a``-prefixed wrappers (worker thread).
    ``clock`` returns the current UTC time (tests pass a fake).
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or _utcnow

    def append(
        self, kind: str, actor: str, subject: str = "", details: Mapping[str, Any] | None = None
    ) -> AuditEvent:
        """Append an event in its own transaction, e.g. ``append("config.reload", "gateway",
        "relaygate.yaml", {"routes": 4})``. Raises ``ValueError`` / ``StorageError``.
        """
        with transaction(self._engine, write=True) as conn:
            return append_event(conn, kind, actor, subject, details, now=self._clock())

    async def aappend(
        self, kind: str, actor: str, subject: str = "", details: Mapping[str, Any] | None = None
    ) -> AuditEvent:
        """``append`` in a worker thread."""
        return await asyncio.to_thread(self.append, kind, actor, subject, details)

    def verify(self) -> VerifyResult:
        """Walk the chain oldest first and stop at the first break (see ``VerifyResult``).

        Checks, per event: its id follows the previous one (a gap means a removed or renumbered
        event; the missing id is named); its stored content hashes to its ``hash`` (else it was
        edited); its ``prev_hash`` equals the previous event's ``hash`` (else the previous event
        was rewritten with a recomputed hash, or events were moved). Raises ``StorageError``.
        """
        prev: AuditEvent | None = None
        checked = 0
        for event in self._walk():
            checked += 1
            broken = _check_link(prev, event)
            if broken is not None:
                return VerifyResult(ok=False, checked=checked, first_bad_id=broken[0], problem=broken[1])
            prev = event
        return VerifyResult(ok=True, checked=checked, head_hash=None if prev is None else prev.hash)

    async def averify(self) -> VerifyResult:
        """``verify`` in a worker thread."""
        return await asyncio.to_thread(self.verify)

    def _walk(self) -> Iterator[AuditEvent]:
        after = None
        while True:
            stmt = _select().order_by(audit_events.c.id).limit(_PAGE)
            if after is not None:
                stmt = stmt.where(audit_events.c.id > after)
            with transaction(self._engine) as conn:
                page = [_event(row) for row in conn.execute(stmt).mappings()]
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].id

    def list(
        self, since: datetime | None = None, kind: str | None = None, limit: int | None = 100
    ) -> builtins.list[AuditEvent]:
        """Events with ``ts >= since`` (naive means UTC) whose kind matches ``kind``, oldest first;
        with ``limit``, the newest ``limit`` of them.

        ``kind`` ending in ``.`` is a prefix (``"cutoff."``); otherwise it matches that kind and
        its sub-kinds (``"cutoff"`` matches ``cutoff.set`` but not ``cutoffs.x``).
        """
        stmt = _select().order_by(audit_events.c.id.desc())
        if since is not None:
            stmt = stmt.where(audit_events.c.ts >= since)
        if kind:
            column = audit_events.c.kind
            prefix = column.startswith(kind if kind.endswith(".") else kind + ".", autoescape=True)
            stmt = stmt.where(prefix if kind.endswith(".") else sa.or_(column == kind, prefix))
        if limit is not None:
            stmt = stmt.limit(limit)
        with transaction(self._engine) as conn:
            events = [_event(row) for row in conn.execute(stmt).mappings()]
        events.reverse()
        return events


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_link(prev: AuditEvent | None, event: AuditEvent) -> tuple[int, str] | None:
    """None if ``event`` rightly follows ``prev`` (None: it should be the first), else
    (first bad id, problem).
    """
    expected = 1 if prev is None else prev.id + 1
    if event.id > expected:
        return expected, f"event {expected} is missing (the next stored event is {event.id})"
    if event.id < expected:
        return event.id, f"event id {event.id} is out of sequence (expected {expected})"
    try:
        digest = event_hash(*_hashed_fields(event))
    except ValueError:  # details edited into something that is not JSON
        digest = ""
    if digest != event.hash:
        return event.id, f"event {event.id} was edited: its contents do not match its hash"
    if prev is None:
        if event.prev_hash != GENESIS_HASH:
            return event.id, "event 1 does not start the chain: its prev_hash is not 64 zeros"
        return None
    if event.prev_hash != prev.hash:
        # Both events hash correctly, so the earlier one was rewritten with a fresh hash (or
        # this one's link was, or events were moved); the break starts at the earlier one.
        return prev.id, (
            f"event {prev.id} does not match the hash that event {event.id} recorded for it "
            f"(event {prev.id} was rewritten, or events were moved)"
        )
    return None


def _text(value: str) -> str:
    # PostgreSQL refuses NUL in text; the chain hashes what is stored, so replace before hashing.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _json_object(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``details`` as plain JSON data (tuples become lists), exactly as it will read back."""
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise ValueError("details must be a JSON object (a mapping)")
    try:
        return dict(json.loads(json.dumps(dict(details), allow_nan=False, sort_keys=True)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"details are not JSON-encodable: {exc}") from exc


def _hashed_fields(event: AuditEvent) -> tuple[int, datetime, str, str, str, dict[str, Any], str]:
    return (event.id, event.ts, event.kind, event.actor, event.subject, event.details, event.prev_hash)


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "ts": event.ts,
        "kind": event.kind,
        "actor": event.actor,
        "subject": event.subject,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _select() -> sa.Select[Any]:
    # details as its stored text, parsed here: a value edited into invalid JSON must show up as
    # an edited event in verify(), not as a decoding error from the driver.
    columns = [c for c in audit_events.c if c.name != "details"]
    return sa.select(*columns, sa.cast(audit_events.c.details, sa.Text).label("details"))


def _event(row: Any) -> AuditEvent:
    try:
        details = json.loads(row["details"])
    except (TypeError, ValueError):
        details = None
    if not isinstance(details, dict):  # never hashes to the stored hash, so verify reports it
        details = {"_unreadable": row["details"]}
    return AuditEvent(
        id=int(row["id"]),
        ts=row["ts"],
        kind=row["kind"],
        actor=row["actor"],
        subject=row["subject"],
        details=details,
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
