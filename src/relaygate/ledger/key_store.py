"""Tenants and virtual keys: create, look up (cached for the hot path), revoke, list.

A key is ``rg-`` + 43 url-safe characters (``secrets.token_urlsafe(32)``: 256 random bits). Only
its SHA-256 hex digest is stored, plus the first 8 characters for display. A fast unsalted hash
is enough because the secret is 256 random bits, not a human password: no dictionary or
brute-force attack can reach it, so a slow KDF (bcrypt/argon2) would buy nothing and would cost
every request; the digest also makes lookup one indexed equality query.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from relaygate.ledger.audit import append_event
from relaygate.ledger.db import StorageError, transaction
from relaygate.ledger.schema import tenants, virtual_keys

__all__ = ["KEY_PREFIX", "KeyInfo", "KeyRecord", "KeyStore", "TenantRecord", "hash_key"]

logger = logging.getLogger(__name__)

KEY_PREFIX = "rg-"
_DISPLAY_CHARS = 8
_MAX_KEY_CHARS = 256
_MAX_TENANT_CHARS = 128
_CREATE_TRIES = 3  # a key-id collision (32 random bits) or a tenant created concurrently


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What authentication needs about an active key."""

    key_id: str
    tenant: str
    region: str | None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as listed to an operator (never the secret: ``key_prefix`` is its first 8 chars)."""

    key_id: str
    tenant: str
    region: str | None
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant row: ``region`` is the region whose law applies (e.g. ``"EU"``), or None."""

    name: str
    region: str | None
    created_at: datetime


def hash_key(plaintext: str) -> str:
    """SHA-256 hex digest (64 chars) of the key's UTF-8 bytes; see the module docstring for why."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


class KeyStore:
    """Keys in the database behind ``engine`` (owned by the caller), with a lookup cache.

    ``lookup``/``alookup`` answers are cached per key for ``ttl_s`` seconds (unknown or revoked
    keys for ``negative_ttl_s``), at most ``max_cached`` entries. Creating or revoking a key
    through this instance takes effect here at once; other processes see it within their TTL.
    While the database is failing, keys that were valid up to ``stale_if_error_s`` seconds
    after their entry expired keep working, so a database hiccup does not fail every request.
    Methods other than ``alookup`` block: call them from a thread when on an event loop.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        ttl_s: float = 5.0,
        negative_ttl_s: float = 1.0,
        max_cached: int = 10_000,
        stale_if_error_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._max_cached = max_cached
        self._stale_if_error_s = stale_if_error_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        # Bumped on every invalidation so a lookup racing a revoke cannot re-cache the old answer.
        self._generation = 0

    def create_key(
        self, tenant: str, region: str | None = None, *, actor: str = "unknown"
    ) -> tuple[str, str]:
        """Create a key for ``tenant`` (created if missing; its region set if ``region`` given).

        A ``key.create`` audit event (by ``actor``) commits in the same transaction. Returns
        ``(key_id, plaintext)``, e.g. ``("key_ab12cd34", "rg-...")``; the plaintext is not
        stored and cannot be shown again. Raises ``ValueError`` for an empty or over-long tenant
        name, ``StorageError`` if the database fails.
        """
        if not tenant or len(tenant) > _MAX_TENANT_CHARS or tenant != tenant.strip():
            raise ValueError(f"tenant must be 1-{_MAX_TENANT_CHARS} chars without surrounding spaces")
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hash_key(plaintext)
        for attempt in range(_CREATE_TRIES):
            key_id = "key_" + secrets.token_hex(4)
            try:
                self._insert_key(key_id, tenant, region, digest, plaintext[:_DISPLAY_CHARS], actor)
                break
            except StorageError as exc:
                if not exc.conflict or attempt == _CREATE_TRIES - 1:
                    raise
        self._invalidate(digest)  # a negative entry for this digest would hide the new key
        return key_id, plaintext

    def _insert_key(
        self, key_id: str, tenant: str, region: str | None, digest: str, prefix: str, actor: str
    ) -> None:
        now = datetime.now(UTC)
        with transaction(self._engine, write=True) as conn:
            current = conn.execute(sa.select(tenants.c.region).where(tenants.c.name == tenant)).first()
            details: dict[str, str | None] = {"tenant": tenant, "region": region, "key_prefix": prefix}
            if current is not None and region is not None and current.region != region:
                # the region is the tenant's, so this moves every key of the tenant: say so
                details["region_changed_from"] = current.region
            append_event(conn, "key.create", actor, key_id, details, now=now)
            if current is None:
                conn.execute(tenants.insert().values(name=tenant, region=region, created_at=now))
            elif region is not None and current.region != region:
                conn.execute(tenants.update().where(tenants.c.name == tenant).values(region=region))
            conn.execute(
                virtual_keys.insert().values(
                    id=key_id, tenant=tenant, key_hash=digest, key_prefix=prefix, created_at=now
                )
            )

    def lookup(self, plaintext: str) -> KeyInfo | None:
        """The active key ``plaintext`` names, or None (unknown, revoked, malformed). Blocks on a
        cache miss. If the database fails, a key that was valid within ``stale_if_error_s`` is
        still accepted (logged); otherwise ``StorageError`` is raised.
        """
        if not _plausible(plaintext):
            return None
        digest = hash_key(plaintext)
        hit, info = self._cached(digest)
        if hit:
            return info
        generation = self._generation
        try:
            info = self._fetch(digest)
        except StorageError:
            stale = self._stale(digest)
            if stale is None:
                raise
            return stale
        self._remember(digest, info, generation)
        return info

    async def alookup(self, plaintext: str) -> KeyInfo | None:
        """``lookup`` for the event loop: a cache hit costs one hash and a dict read; a miss runs
        the query in a worker thread.
        """
        if not _plausible(plaintext):
            return None
        digest = hash_key(plaintext)
        hit, info = self._cached(digest)
        if hit:
            return info
        generation = self._generation
        try:
            info = await asyncio.to_thread(self._fetch, digest)
        except StorageError:
            stale = self._stale(digest)
            if stale is None:
                raise
            return stale
        self._remember(digest, info, generation)
        return info

    def revoke(self, key_id: str, *, actor: str = "unknown", reason: str = "") -> bool:
        """Revoke ``key_id``; False if there is no such active key. A ``key.revoke`` audit event
        commits with it. Raises ``StorageError``."""
        with transaction(self._engine, write=True) as conn:
            digest = conn.execute(
                sa.select(virtual_keys.c.key_hash).where(
                    virtual_keys.c.id == key_id, virtual_keys.c.revoked_at.is_(None)
                )
            ).scalar_one_or_none()
            if digest is None:
                return False
            now = datetime.now(UTC)
            append_event(conn, "key.revoke", actor, key_id, {"reason": reason} if reason else None, now=now)
            conn.execute(virtual_keys.update().where(virtual_keys.c.id == key_id).values(revoked_at=now))
        self._invalidate(digest)
        return True

    def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        """All keys (revoked ones too), oldest first, optionally of one tenant."""
        stmt = (
            sa.select(
                virtual_keys.c.id,
                virtual_keys.c.tenant,
                tenants.c.region,
                virtual_keys.c.key_prefix,
                virtual_keys.c.created_at,
                virtual_keys.c.revoked_at,
            )
            .join(tenants, tenants.c.name == virtual_keys.c.tenant)
            .order_by(virtual_keys.c.created_at, virtual_keys.c.id)
        )
        if tenant is not None:
            stmt = stmt.where(virtual_keys.c.tenant == tenant)
        with transaction(self._engine) as conn:
            return [KeyRecord(*row) for row in conn.execute(stmt)]

    def upsert_tenant(self, name: str, region: str | None, *, actor: str = "unknown") -> TenantRecord:
        """Create tenant ``name`` or change its region; a ``tenant.upsert`` audit event commits
        with it (``region_changed_from`` when it moved). Raises ``ValueError`` for a bad name."""
        if not name or len(name) > _MAX_TENANT_CHARS or name != name.strip():
            raise ValueError(f"tenant must be 1-{_MAX_TENANT_CHARS} chars without surrounding spaces")
        now = datetime.now(UTC)
        with transaction(self._engine, write=True) as conn:
            current = conn.execute(
                sa.select(tenants.c.region, tenants.c.created_at).where(tenants.c.name == name)
            ).first()
            details: dict[str, str | None] = {"region": region}
            if current is None:
                conn.execute(tenants.insert().values(name=name, region=region, created_at=now))
                created = now
            else:
                created = current.created_at
                if current.region != region:
                    details["region_changed_from"] = current.region
                    conn.execute(tenants.update().where(tenants.c.name == name).values(region=region))
            append_event(conn, "tenant.upsert", actor, name, details, now=now)
        with self._lock:  # cached key lookups carry the tenant's region
            self._cache.clear()
            self._generation += 1
        return TenantRecord(name, region, created)

    def list_tenants(self) -> list[TenantRecord]:
        """All tenants, by name."""
        stmt = sa.select(tenants.c.name, tenants.c.region, tenants.c.created_at).order_by(tenants.c.name)
        with transaction(self._engine) as conn:
            return [TenantRecord(*row) for row in conn.execute(stmt)]

    def _fetch(self, digest: str) -> KeyInfo | None:
        stmt = (
            sa.select(virtual_keys.c.id, virtual_keys.c.tenant, tenants.c.region)
            .join(tenants, tenants.c.name == virtual_keys.c.tenant)
            .where(virtual_keys.c.key_hash == digest, virtual_keys.c.revoked_at.is_(None))
        )
        with transaction(self._engine) as conn:
            row = conn.execute(stmt).first()
        return None if row is None else KeyInfo(key_id=row.id, tenant=row.tenant, region=row.region)

    def _cached(self, digest: str) -> tuple[bool, KeyInfo | None]:
        entry = self._cache.get(digest)
        if entry is None or entry[0] <= self._clock():
            return False, None
        return True, entry[1]

    def _stale(self, digest: str) -> KeyInfo | None:
        """After a failed fetch: the expired positive answer if recent enough, else None."""
        entry = self._cache.get(digest)
        if entry is None or entry[1] is None or self._clock() - entry[0] > self._stale_if_error_s:
            return None
        logger.warning("key lookup failed; accepting %s from a stale cache entry", entry[1].key_id)
        return entry[1]

    def _remember(self, digest: str, info: KeyInfo | None, generation: int) -> None:
        now = self._clock()
        with self._lock:
            if generation != self._generation:
                return
            if len(self._cache) >= self._max_cached:
                # Bounded so a flood of random invalid keys cannot grow memory without limit.
                self._cache = {d: e for d, e in self._cache.items() if e[0] > now}
                if len(self._cache) >= self._max_cached:
                    self._cache.clear()
            self._cache[digest] = (now + (self._ttl_s if info else self._negative_ttl_s), info)

    def _invalidate(self, digest: str) -> None:
        with self._lock:
            self._generation += 1
            self._cache.pop(digest, None)


def _plausible(plaintext: str) -> bool:
    return plaintext.startswith(KEY_PREFIX) and len(plaintext) <= _MAX_KEY_CHARS
