"""Open the gateway's storage for one process lifetime: database, key store, ledger writers.

``async with open_storage(url) as storage`` migrates the database to head, starts the batched
writers (usage rows; captured payloads), and on exit flushes every pending row before disposing
the engine.
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
from relaygate.ledger.payload_store import PayloadRecord, PayloadSink, PayloadStore
from relaygate.ledger.records import UsageRecord
from relaygate.ledger.usage_store import UsageStore
from relaygate.ledger.writer import LedgerWriter

__all__ = ["Storage", "open_storage"]


@dataclass
class Storage:
    engine: sa.Engine
    usage: UsageStore
    keys: KeyStore
    writer: LedgerWriter[UsageRecord]
    audit: AuditLog
    cutoffs: CutoffStore
    payloads: PayloadStore
    payload_writer: LedgerWriter[PayloadRecord]


@contextlib.asynccontextmanager
async def open_storage(url: str | None = None) -> AsyncIterator[Storage]:
    """``url``: a SQLAlchemy URL, or None for ``$RELAYGATE_DB_URL`` / SQLite under ``$RELAYGATE_HOME``.

    Raises ``StorageError`` when the database cannot be opened or migrated.
    """
    engine = await asyncio.to_thread(open_database, url)
    try:
        usage = UsageStore(engine)
        writer = LedgerWriter(usage)
        payloads = PayloadStore(engine)
        payload_writer = LedgerWriter(PayloadSink(payloads))
        await writer.start()
        await payload_writer.start()
        try:
            yield Storage(
                engine,
                usage,
                KeyStore(engine),
                writer,
                AuditLog(engine),
                CutoffStore(engine),
                payloads,
                payload_writer,
            )
        finally:
            await payload_writer.close()
            await writer.close()
    finally:
        await asyncio.to_thread(engine.dispose)
