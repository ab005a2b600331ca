"""Storage: the usage ledger, tenants and virtual keys (SQLite by default, PostgreSQL by URL).

Start-up: ``engine = open_database(url)`` (resolves the URL, migrates to head), then
``UsageStore(engine)`` behind a ``LedgerWriter`` and a ``KeyStore(engine)``; at shutdown
``await writer.close()`` and ``engine.dispose()``. ``relaygate.ledger.runtime.open_storage``
does all of this. Schema upgrades alone: ``relaygate.ledger.migrate.migrate(url)`` (the function
is deliberately not re-exported here, where it would shadow its module).
"""

from relaygate.ledger.db import StorageError, create_db_engine, default_db_url, resolve_db_url
from relaygate.ledger.key_store import KeyInfo, KeyRecord, KeyStore, TenantRecord, hash_key
from relaygate.ledger.migrate import open_database
from relaygate.ledger.records import AttemptRecord, UsageRecord
from relaygate.ledger.usage_store import GroupBy, UsageStore, UsageSummary
from relaygate.ledger.writer import LedgerWriter, UsageSink

__all__ = [
    "AttemptRecord",
    "GroupBy",
    "KeyInfo",
    "KeyRecord",
    "KeyStore",
    "LedgerWriter",
    "StorageError",
    "TenantRecord",
    "UsageRecord",
    "UsageSink",
    "UsageStore",
    "UsageSummary",
    "create_db_engine",
    "default_db_url",
    "hash_key",
    "open_database",
    "resolve_db_url",
]
