"""The cutoff registry in the database: (provider, region) -> restricted, with its history.

The database is the source of truth, so ``relaygate cutoff set`` changes a running gateway: the
gateway polls ``version()`` (one indexed row) about every second and reloads ``active()`` only when
it changed. Every change (set, clear, expiry, probe result) bumps the version in the same
transaction, and set/clear/expiry also write their audit event there (``cutoff.set`` or
``cutoff.detected``, ``cutoff.clear``, ``cutoff.expired``), so a change and its record land
together or not at all. Rows are never deleted: clearing stamps ``cleared_at``.

Regions are upper case; ``*`` means every region. Expired rows stop counting at once (``active``
filters them); ``expire()`` closes them in the table and audits it, and every write does the same
for any it finds, so history shows when each ended. Re-probe schedule: ``relaygate.policy.cutoffs``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from relaygate.ledger.audit import append_event, lock_chain
from relaygate.ledger.db import transaction
from relaygate.ledger.schema import cutoff_version, cutoffs

__all__ = ["ALL_REGIONS", "Cutoff", "CutoffSource", "CutoffStore", "normalize_region"]

CutoffSource = Literal["operator", "detected"]
ALL_REGIONS = "*"
_SOURCES = ("operator", "detected")
_REGION = re.compile(r"\*|[A-Z0-9][A-Z0-9_-]{0,31}")
_MAX_PROVIDER_CHARS = 128
_MAX_ACTOR_CHARS = 128


@dataclass(frozen=True, slots=True)
class Cutoff:
    """One registry row. Times are aware UTC.

    ``region``: upper case, ``"*"`` for every region. ``source``: ``"operator"`` (set by a person;
    never cleared automatically) or ``"detected"`` (from an upstream region block).
    ``probe_successes``: consecutive successful re-probes since the last failure or detection;
    ``last_probe_at``: when the last probe was recorded. ``cleared_at`` is None while open.
    """

    provider: str
    region: str
    reason: str
    source: CutoffSource
    created_at: datetime
    expires_at: datetime | None = None
    probe_successes: int = 0
    last_probe_at: datetime | None = None
    cleared_at: datetime | None = None
    id: int | None = None
    created_by: str | None = None
    cleared_by: str | None = None
    clear_reason: str | None = None

    @property
    def target(self) -> str:
        """``provider:region`` as the CLI writes it, e.g. ``"openai:CN"``."""
        return f"{self.provider}:{self.region}"

    def in_force(self, now: datetime) -> bool:
        """Open and not expired at ``now``."""
        return self.cleared_at is None and (self.expires_at is None or self.expires_at > now)


def normalize_region(region: str | None) -> str:
    """``" eu "`` -> ``"EU"``; None or empty -> ``"*"``. Raises ``ValueError`` unless the result is
    ``*`` or 1-32 of ``A-Z 0-9 _ -`` starting with a letter or digit.
    """
    text = (region or "").strip().upper() or ALL_REGIONS
    if not _REGION.fullmatch(text):
        raise ValueError(f"region {region!r} must be '*' or a code like EU, US, CN, us-east-1")
    return text


class CutoffStore:
    """Cutoffs behind ``engine`` (owned by the caller). Methods block; ``a``-prefixed wrappers run
    them in a worker thread. ``clock`` returns the current UTC time. All raise ``StorageError``
    when the database fails.
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or _utcnow

    def set(
        self,
        provider: str,
        region: str | None,
        reason: str,
        source: CutoffSource = "operator",
        expires_at: datetime | None = None,
        *,
        actor: str,
    ) -> Cutoff:
        """Restrict ``provider`` in ``region`` (``"*"``/None: everywhere) and return the open row.

        Idempotent for an open pair: its reason, source and expiry are updated (a change is
        audited, a repeat is not, so a detector may call this for every blocked request). A
        detection never touches an operator's cutoff; an operator's set turns a detected cutoff
        into an operator one; a new detection resets ``probe_successes``. Audit kind:
        ``cutoff.detected`` for detected, else ``cutoff.set``.
        Raises ``ValueError`` for a bad provider, region, source, empty reason or past expiry.
        """
        provider, region, actor = _provider(provider), normalize_region(region), _actor(actor)
        reason = reason.strip()
        if not reason:
            raise ValueError("reason must not be empty")
        if source not in _SOURCES:
            raise ValueError(f"source must be one of {', '.join(_SOURCES)}, not {source!r}")
        now = self._clock()
        expires_at = _utc(expires_at)
        if expires_at is not None and expires_at <= now:
            raise ValueError("expires_at must be in the future")
        # A detector repeats itself for every blocked request: answer repeats without the write lock.
        with transaction(self._engine) as conn:
            seen = _open_row(conn, provider, region)
        if seen is not None and seen.in_force(now) and _unchanged(seen, reason, source, expires_at):
            return seen
        with transaction(self._engine, write=True) as conn:
            lock_chain(conn)
            self._expire(conn, now, actor)
            current = _open_row(conn, provider, region)
            if current is None:
                row = conn.execute(
                    cutoffs.insert().values(
                        provider=provider,
                        region=region,
                        reason=reason,
                        source=source,
                        created_at=now,
                        created_by=actor,
                        expires_at=expires_at,
                        probe_successes=0,
                    )
                )
                cutoff = Cutoff(
                    provider,
                    region,
                    reason,
                    source,
                    now,
                    expires_at,
                    id=int(row.inserted_primary_key[0]),  # type: ignore[index]
                    created_by=actor,
                )
                self._changed(conn, _set_kind(source), cutoff, actor, now, updated=False)
                return cutoff
            if _unchanged(current, reason, source, expires_at):
                return current
            changes: dict[str, Any] = {"reason": reason, "source": source, "expires_at": expires_at}
            if source == "detected":
                changes["probe_successes"] = 0  # blocked again: the probe streak starts over
            conn.execute(cutoffs.update().where(cutoffs.c.id == current.id).values(**changes))
            cutoff = _replace(current, **changes)
            if (current.reason, current.source, current.expires_at) != (reason, source, expires_at):
                self._changed(conn, _set_kind(source), cutoff, actor, now, updated=True)
            else:  # only the probe streak was reset: nothing to audit, but views must see it
                _bump(conn)
            return cutoff

    def clear(self, provider: str, region: str | None, *, actor: str, reason: str = "") -> bool:
        """Close the open cutoff for the pair (``cleared_at`` = now, history kept); False if there
        is none (or it had already expired, which is then recorded as such).
        """
        provider, region, actor = _provider(provider), normalize_region(region), _actor(actor)
        now = self._clock()
        with transaction(self._engine, write=True) as conn:
            lock_chain(conn)
            self._expire(conn, now, actor)
            current = _open_row(conn, provider, region)
            if current is None:
                return False
            conn.execute(
                cutoffs.update()
                .where(cutoffs.c.id == current.id)
                .values(cleared_at=now, cleared_by=actor, clear_reason=reason.strip() or None)
            )
            cleared = _replace(current, cleared_at=now, cleared_by=actor, clear_reason=reason.strip() or None)
            self._changed(conn, "cutoff.clear", cleared, actor, now, clear_reason=reason.strip() or None)
            return True

    def expire(self, *, actor: str = "gateway") -> list[Cutoff]:
        """Close every open cutoff whose ``expires_at`` has passed (``cleared_at`` = its expiry,
        audit ``cutoff.expired``); returns them. Cheap when there are none.
        """
        actor = _actor(actor)
        with transaction(self._engine, write=True) as conn:
            lock_chain(conn)
            return self._expire(conn, self._clock(), actor)

    def record_probe(self, provider: str, region: str | None, success: bool) -> Cutoff | None:
        """Record a re-probe of the open cutoff for the pair: a success adds one to
        ``probe_successes``, a failure resets it to 0; ``last_probe_at`` = now. Returns the
        updated row, or None if the pair has no open cutoff (e.g. another replica cleared it).
        Deciding to clear is the caller's: ``policy.cutoffs.should_auto_clear``, then ``clear``.
        """
        provider, region = _provider(provider), normalize_region(region)
        now = self._clock()
        with transaction(self._engine, write=True) as conn:
            lock_chain(conn)  # two replicas probing at once must not lose a count
            current = _open_row(conn, provider, region)
            if current is None:
                return None
            successes = current.probe_successes + 1 if success else 0
            conn.execute(
                cutoffs.update()
                .where(cutoffs.c.id == current.id)
                .values(probe_successes=successes, last_probe_at=now)
            )
            _bump(conn)
            return _replace(current, probe_successes=successes, last_probe_at=now)

    def get(self, provider: str, region: str | None) -> Cutoff | None:
        """The open row for exactly this pair (expired or not), or None."""
        provider, region = _provider(provider), normalize_region(region)
        with transaction(self._engine) as conn:
            return _open_row(conn, provider, region)

    def active(self, now: datetime | None = None) -> list[Cutoff]:
        """Cutoffs in force at ``now`` (default: the clock): open and not expired, by provider
        and region.
        """
        moment = _utc(now) or self._clock()
        stmt = (
            sa.select(cutoffs)
            .where(
                cutoffs.c.cleared_at.is_(None),
                sa.or_(cutoffs.c.expires_at.is_(None), cutoffs.c.expires_at > moment),
            )
            .order_by(cutoffs.c.provider, cutoffs.c.region)
        )
        with transaction(self._engine) as conn:
            return [_cutoff(row) for row in conn.execute(stmt).mappings()]

    def history(self, limit: int | None = None) -> list[Cutoff]:
        """Every row, cleared ones too, newest first."""
        stmt = sa.select(cutoffs).order_by(cutoffs.c.created_at.desc(), cutoffs.c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with transaction(self._engine) as conn:
            return [_cutoff(row) for row in conn.execute(stmt).mappings()]

    def version(self) -> int:
        """A counter that changes with every change to the registry (0 on a new database)."""
        with transaction(self._engine) as conn:
            value = conn.execute(sa.select(cutoff_version.c.version).where(cutoff_version.c.id == 1)).scalar()
        return int(value or 0)

    async def aset(
        self,
        provider: str,
        region: str | None,
        reason: str,
        source: CutoffSource = "operator",
        expires_at: datetime | None = None,
        *,
        actor: str,
    ) -> Cutoff:
        return await asyncio.to_thread(self.set, provider, region, reason, source, expires_at, actor=actor)

    async def aclear(self, provider: str, region: str | None, *, actor: str, reason: str = "") -> bool:
        return await asyncio.to_thread(self.clear, provider, region, actor=actor, reason=reason)

    async def arecord_probe(self, provider: str, region: str | None, success: bool) -> Cutoff | None:
        return await asyncio.to_thread(self.record_probe, provider, region, success)

    async def aexpire(self, *, actor: str = "gateway") -> list[Cutoff]:
        return await asyncio.to_thread(self.expire, actor=actor)

    async def aactive(self, now: datetime | None = None) -> list[Cutoff]:
        return await asyncio.to_thread(self.active, now)

    async def aversion(self) -> int:
        return await asyncio.to_thread(self.version)

    def _expire(self, conn: sa.Connection, now: datetime, actor: str) -> list[Cutoff]:
        stmt = sa.select(cutoffs).where(cutoffs.c.cleared_at.is_(None), cutoffs.c.expires_at <= now)
        ended = [_cutoff(row) for row in conn.execute(stmt).mappings()]
        closed = []
        for cutoff in ended:
            conn.execute(
                cutoffs.update()
                .where(cutoffs.c.id == cutoff.id)
                .values(cleared_at=cutoff.expires_at, cleared_by=actor, clear_reason="expired")
            )
            done = _replace(cutoff, cleared_at=cutoff.expires_at, cleared_by=actor, clear_reason="expired")
            self._changed(conn, "cutoff.expired", done, actor, now)
            closed.append(done)
        return closed

    @staticmethod
    def _changed(
        conn: sa.Connection, kind: str, cutoff: Cutoff, actor: str, now: datetime, **extra: Any
    ) -> None:
        details = {
            "cutoff_id": cutoff.id,
            "provider": cutoff.provider,
            "region": cutoff.region,
            "reason": cutoff.reason,
            "source": cutoff.source,
            "expires_at": None if cutoff.expires_at is None else cutoff.expires_at.isoformat(),
            **extra,
        }
        append_event(conn, kind, actor, cutoff.target, details, now=now)
        _bump(conn)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _provider(provider: str) -> str:
    text = provider.strip()
    if not text or len(text) > _MAX_PROVIDER_CHARS or ":" in text or "\x00" in text:
        raise ValueError(f"provider must be 1-{_MAX_PROVIDER_CHARS} characters without ':'")
    return text


def _actor(actor: str) -> str:
    if not actor or len(actor) > _MAX_ACTOR_CHARS:
        raise ValueError(f"actor must be 1-{_MAX_ACTOR_CHARS} characters")
    return actor


def _unchanged(current: Cutoff, reason: str, source: str, expires_at: datetime | None) -> bool:
    """True when ``set`` with these values would leave ``current`` as it is."""
    if source == "detected" and current.source == "operator":
        return True  # the operator's word (reason, expiry) stands
    same = (current.reason, current.source, current.expires_at) == (reason, source, expires_at)
    return same and (source != "detected" or current.probe_successes == 0)


def _set_kind(source: str) -> str:
    return "cutoff.detected" if source == "detected" else "cutoff.set"


def _bump(conn: sa.Connection) -> None:
    updated = conn.execute(
        cutoff_version.update().where(cutoff_version.c.id == 1).values(version=cutoff_version.c.version + 1)
    )
    if updated.rowcount == 0:  # the row was deleted by hand: start again
        conn.execute(cutoff_version.insert().values(id=1, version=1))


def _open_row(conn: sa.Connection, provider: str, region: str) -> Cutoff | None:
    row = (
        conn.execute(
            sa.select(cutoffs).where(
                cutoffs.c.provider == provider, cutoffs.c.region == region, cutoffs.c.cleared_at.is_(None)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _cutoff(row)


def _cutoff(row: Any) -> Cutoff:
    return Cutoff(
        provider=row["provider"],
        region=row["region"],
        reason=row["reason"],
        source=row["source"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        probe_successes=int(row["probe_successes"]),
        last_probe_at=row["last_probe_at"],
        cleared_at=row["cleared_at"],
        id=int(row["id"]),
        created_by=row["created_by"],
        cleared_by=row["cleared_by"],
        clear_reason=row["clear_reason"],
    )


def _replace(cutoff: Cutoff, **changes: Any) -> Cutoff:
    return replace(cutoff, **changes)
