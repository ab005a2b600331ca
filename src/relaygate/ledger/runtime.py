"""Open the gateway's storage for one process lifetime: database, key store, ledger writer.

``async with open_storage(url) as storage`` migrates the database to head, starts the
batched writer, and on exit flushes every pending ledger row before disposing the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import sqlalchemy as sa

from relaygate.ledger.audit import AuditLog
from relaygate.ledger.cutoff_store import CutoffStore
from relaygate.ledger.key_store import KeyStore
from relaygate.ledger.migrate import open_database
from relaygate.ledger.usage_store import UsageStore
from relaygate.ledger.writer import LedgerWriter

__all__ = ["Storage", "open_storage"]


@dataclass
class Storage:
    engine: sa.Engine
    usage: UsageStore
    keys: KeyStore
    writer: LedgerWriter
    audit: AuditLog
    cutoffs: CutoffStore


@contextlib.asynccontextmanager
async def open_storage(url: str | None = None) -> AsyncIterator[Storage]:
    """``url``: a SQLAlchemy URL, or None for ``$RELAYGATE_DB_URL`` / SQLite under ``$RELAYGATE_HOME``.

    Raises ``StorageError`` when the database cannot be opened or migrated.
    """
    engine = await asyncio.to_thread(open_database, url)
    try:
        usage = UsageStore(engine)
        writer = LedgerWriter(usage)
        await writer.start()
        try:
            yield Storage(engine, usage, KeyStore(engine), writer, AuditLog(engine), CutoffStore(engine))
        finally:
            await writer.close()
    finally:
        await asyncio.to_thread(engine.dispose)
